"""Wall-clock seconds per pipeline stage, summed over a shard (for stats and bench)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimes:
    """seconds: per stage; failed_stage: the innermost stage an error left since it was
    last cleared (what errors.jsonl names when an input fails unexpectedly)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.failed_stage = ""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        except Exception:
            self.failed_stage = self.failed_stage or name
            raise
        finally:
            self.seconds[name] += time.perf_counter() - start
