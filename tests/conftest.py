import logging
import os
import uuid

import fsspec
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


# moto accepts any credentials; these keep the tests away from a user's real ones.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "simlidar-test",
    "AWS_SECRET_ACCESS_KEY": "simlidar-test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 (a free port) for this test session, as the
    environment of this process and of its children sees it; stopped at the end."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**FAKE_AWS, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
            patch.setenv(name, value)
        yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_server):
    """A new empty bucket: its s3:// URL."""
    name = f"simlidar-{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(name)
    return f"s3://{name}"
