"""Where the files that come with simlidar lie, whatever folder a command runs from: the
bundled scenes (the checkout's examples/scenes, a wheel's simlidar/scenes: photos with depth
and intrinsics sidecars) and the shared real sensor data (the checkout's ../shared/data, or
$SIMLIDAR_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PipelineError

# A checkout's root, or an installed wheel's simlidar/ (where the scenes are simlidar/scenes).
CHECKOUT = Path(__file__).resolve().parents[2]
SCENES = next(
    (folder for folder in (CHECKOUT / "examples" / "scenes", CHECKOUT / "scenes") if folder.is_dir()),
    CHECKOUT / "examples" / "scenes",
)
STREET = SCENES / "street_kitti.jpg"


def shared_data(relative: str) -> Path:
    """A path under the shared real data: $SIMLIDAR_DATA when set, else the checkout's ../shared/data."""
    root = os.environ.get("SIMLIDAR_DATA") or CHECKOUT.parent / "shared" / "data"
    return Path(root) / relative


def existing(path: Path, what: str, remedy: str) -> Path:
    """`path` if it exists, else a one-line error: what is missing, where it was looked for, what to do."""
    if not path.exists():
        raise PipelineError(f"{what} is not at {path}: {remedy}")
    return path
