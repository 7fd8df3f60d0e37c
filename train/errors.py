"""The training package's one user-facing error; it imports nothing heavy so that the
CLI can register it without importing torch."""


class TrainError(Exception):
    """Bad shards, a checkpoint that does not fit, or an option that cannot work:
    the message is one line that says what to do."""


class TrainOptionError(TrainError):
    """An option's value, or a combination of options, that cannot work: a usage error."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the checkpoint was saved: where the run stands."""

    def __init__(self, step: int, checkpoint):
        super().__init__(step)
        self.step, self.checkpoint = step, checkpoint
