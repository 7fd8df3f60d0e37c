"""What a run writes as it goes (rank 0 only): OUT/log.csv (a row per --log-every steps:
loss, its parts, the learning rate that step used, speed, the samples skipped so far),
OUT/val.csv (a row per validation: KITTI metrics), OUT/errors.jsonl (a line per bad
sample) and TensorBoard events in OUT/tensorboard/ (the same scalars and a few preview
pictures per validation). A run resumed at step S first drops the rows, lines and events
a killed run wrote after S, so the logs always match the weights."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from .metrics import METRIC_NAMES


class CsvLog:
    """A CSV file of rows keyed by "step", appended to and flushed row by row."""

    def __init__(self, path: Path, columns: list[str], resume_step: int | None):
        kept = []
        if resume_step is not None and path.is_file():
            with open(path, newline="", errors="replace") as existing:
                kept = [row for row in csv.DictReader(existing) if 0 < _step(row) <= resume_step]
        self.file = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.file, columns, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(kept)
        self.file.flush()

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _step(row: dict) -> int:
    """A row's step; 0 for a row a kill cut short or a hand damaged (it is dropped)."""
    try:
        return int(row.get("step") or 0)
    except ValueError:
        return 0


class ErrorLog:
    """OUT/errors.jsonl: one line per bad sample, {"split" (train or val), "shard", "key",
    "reason", "step" (the step whose batch met it; the run's first step's before it)},
    each sample once. The file is rewritten (with a resumed run's lines up to its step)
    at the first line written or when the run begins, so a run refused before either
    leaves it as it was."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path, self.file = path, None
        self.kept = []
        if resume_step is not None and path.is_file():
            self.kept = [record for record in _records(path) if record.get("step", 0) <= resume_step]
        self.seen = {(record.get("split"), record.get("shard"), record.get("key")) for record in self.kept}

    def begin(self) -> None:
        if self.file is None:
            self.file = open(self.path, "w")
            self.file.writelines(json.dumps(record) + "\n" for record in self.kept)
            self.file.flush()

    def write(self, record: dict) -> None:
        """Append a record, unless its sample is already there."""
        seen = (record["split"], record["shard"], record["key"])
        if seen not in self.seen:
            self.begin()
            self.seen.add(seen)
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _records(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if isinstance(record, dict):
            records.append(record)
    return records


class RunLog:
    def __init__(self, out: Path, loss_parts: tuple[str, ...], resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.loss_parts = loss_parts
        columns = ["step", "loss", *loss_parts, "lr", "samples_per_s", "elapsed_s", "skipped"]
        self.train = CsvLog(out / "log.csv", columns, resume_step)
        self.val = CsvLog(out / "val.csv", ["step", *METRIC_NAMES, "images", "best"], resume_step)
        # Events at steps after the checkpoint's are dropped (those at its step are its own).
        purge_step = resume_step + 1 if resume_step is not None else None
        self.tensorboard = SummaryWriter(str(out / "tensorboard"), purge_step=purge_step)

    def step(self, step: int, loss: float, parts: dict, lr: float, speed: tuple[float, float], skipped: int) -> dict:
        """Write one training row (speed: samples per second, seconds since the run began;
        skipped: bad samples met so far); returns it as logged (strings)."""
        samples_per_s, elapsed_s = speed
        row = {
            "step": step,
            "loss": f"{loss:.6g}",
            **{name: f"{parts[name]:.6g}" for name in self.loss_parts},
            "lr": f"{lr:.6g}",
            "samples_per_s": f"{samples_per_s:.2f}",
            "elapsed_s": f"{elapsed_s:.1f}",
            "skipped": skipped,
        }
        self.train.write(row)
        self.tensorboard.add_scalar("loss/total", loss, step)
        for name in self.loss_parts:
            self.tensorboard.add_scalar(f"loss/{name}", parts[name], step)
        self.tensorboard.add_scalar("lr", lr, step)
        self.tensorboard.add_scalar("samples_per_s", samples_per_s, step)
        return row

    def validation(self, step: int, mean: dict, images: int, best: bool, pictures: list[tuple[str, np.ndarray]]):
        self.val.write(
            {"step": step, **{name: f"{mean[name]:.6g}" for name in METRIC_NAMES}, "images": images, "best": int(best)}
        )
        for name in METRIC_NAMES:
            self.tensorboard.add_scalar(f"val/{name}", mean[name], step)
        for key, picture in pictures:
            self.tensorboard.add_image(f"val/{key}", picture, step, dataformats="HWC")
        self.tensorboard.flush()

    def close(self) -> None:
        self.train.close()
        self.val.close()
        self.tensorboard.close()
