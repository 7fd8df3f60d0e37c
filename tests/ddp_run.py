"""Run by tests/test_train_distributed.py under torchrun (2 CPU ranks, gloo): each rank
records the ramp samples its loader gives (RANK.json), then all train together.
python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_run.py SHARDS OUT"""

import json
import sys
from itertools import islice
from pathlib import Path

from simlidar.train import data, distributed
from simlidar.train.config import TrainConfig
from simlidar.train.loop import train
from simlidar.train.shards import index_shards, list_shards

shards, out = sys.argv[1], Path(sys.argv[2])
ranks = distributed.setup(use_cuda=False)
index = index_shards(list_shards(shards))
loader = data.train_loader(index, 1, (8, 8), 0, 1, shuffle_buffer=1, rank=ranks.rank, world_size=ranks.world_size)
seen = [round(batch["rgb"][0, 1, 0, 0].item() * 255) for batch in islice(loader, 4)]
out.mkdir(parents=True, exist_ok=True)
(out / f"rank{ranks.rank}.json").write_text(json.dumps(seen))
config = TrainConfig(
    shards, out=str(out / "run"), steps=2, batch_size=2, crop=(16, 16), width=4, workers=0, log_every=1, device="cpu"
)
train(config, progress=False)
