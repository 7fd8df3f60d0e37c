"""The training package's one user-facing error; it imports nothing heavy so that the
CLI can register it without importing torch."""


class TrainError(Exception):
    """Bad shards, a checkpoint that does not fit, or an option that cannot work:
    the message is one line that says what to do."""


class TrainOptionError(TrainError):
    """An option's value, or a combination of options, that cannot work: a usage error."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM during training, after the step was saved: where the run
    stands. signal: the signal's name (None when another torchrun rank received it);
    main: whether this is the rank that reports it."""

    def __init__(self, step: int, checkpoint, signal: str | None = "SIGINT", main: bool = True):
        super().__init__(step)
        self.step, self.checkpoint, self.signal, self.main = step, checkpoint, signal, main


class RankStopped(Exception):
    """Under torchrun: another rank failed and said why; this one stops without a word."""

    def __init__(self, rank: int):
        super().__init__(f"rank {rank} stopped the run")
        self.rank = rank


class StoppedAtOnce(KeyboardInterrupt):
    """A stop signal before the first step (nothing new to save), or a second one during
    training (the last checkpoint stays as it was). signal: its name; started: whether
    the loop had begun."""

    def __init__(self, signal: str, started: bool):
        super().__init__(signal)
        self.signal, self.started = signal, started
