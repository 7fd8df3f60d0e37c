"""What a wheel carries (`pip install git+URL` builds one): the sensor catalog and the bundled
scenes, found where the wheel puts them, so that the commands whose defaults are the bundled
scenes work outside a checkout."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_a_wheel_carries_the_bundled_scenes_and_the_catalog_and_finds_them(tmp_path):
    # Built from a copy: the build leaves build/ and *.egg-info beside the sources.
    source = tmp_path / "source"
    skipped = shutil.ignore_patterns(".*", "out", "runs", "build", "*.egg-info", "__pycache__")
    shutil.copytree(REPO, source, ignore=skipped)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", tmp_path / "wheel", source], check=True)
    (wheel,) = (tmp_path / "wheel").glob("simlidar-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", tmp_path / "site", wheel], check=True)
    where = "import simlidar.pipeline.sources.bundled as b, simlidar.sensors.catalog as c; print(b.SCENES, c.__file__)"
    # From another folder, the installed copy ahead of this checkout's editable install.
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    found = subprocess.run([sys.executable, "-c", where], cwd=tmp_path, env=env, capture_output=True, text=True)
    installed = tmp_path / "site" / "simlidar"
    assert found.stdout.split() == [str(installed / "scenes"), str(installed / "sensors" / "catalog.py")], found.stderr
    scenes = REPO / "examples" / "scenes"
    names = sorted(path.name for path in scenes.iterdir())
    assert sorted(path.name for path in (installed / "scenes").iterdir()) == names
    assert (installed / "scenes" / "street_kitti.jpg").read_bytes() == (scenes / "street_kitti.jpg").read_bytes()
    catalog = sorted(path.name for path in (REPO / "sensors" / "catalog").glob("*.toml"))
    assert sorted(path.name for path in (installed / "sensors" / "catalog").glob("*.toml")) == catalog
