import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .helpers import run_cli  # noqa: E402


@pytest.fixture
def cli(capsys, monkeypatch):
    """cli("generate", "--images", ...) -> (exit code, stdout, stderr)."""
    return lambda *args: run_cli(list(args), capsys, monkeypatch)
