"""The generation job: CLI, run config, reader, meshing, simulation, worker, writer, runner."""
