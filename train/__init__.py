"""Training on simlidar shards: data streaming, models, losses, metrics, loops.

It reads samples through `simlidar.pipeline.schema` only; everything it needs from a
teacher is already in the shards."""
