"""Errors a user can act on: the CLI prints their message as one line and exits 2
(pipeline/cli/errors.py lists every such exception)."""


class PipelineError(Exception):
    """A bad option, input folder or output folder, or a run that cannot go on."""
