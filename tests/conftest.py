import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from .helpers import run_cli, scene_depth, write_photo  # noqa: E402


@pytest.fixture
def cli(capsys, monkeypatch):
    """cli("generate", "--images", ...) -> (exit code, stdout, stderr)."""
    return lambda *args: run_cli(list(args), capsys, monkeypatch)


@pytest.fixture
def photos(tmp_path):
    """Three 160 x 96 photos with depth sidecars (a wall with a box each)."""
    folder = tmp_path / "photos"
    for index in range(3):
        write_photo(folder, f"img{index}.jpg", scene_depth(index), seed=index)
    return folder
