"""Where the LiDAR sits relative to the camera: named mounts and per-view jitter.

`T_cam_lidar` (4x4) maps homogeneous points in the LiDAR frame (x forward, y left,
z up) into the camera frame (OpenCV: x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Nominal axes: LiDAR x (forward) is camera z, LiDAR y (left) is camera -x,
# LiDAR z (up) is camera -y.
R_CAM_LIDAR_NOMINAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


@dataclass(frozen=True)
class Mount:
    """A LiDAR placement: its origin in the camera frame (m) and its attitude
    (roll about LiDAR x, pitch about y, yaw about z, degrees) relative to the
    nominal axis alignment."""

    name: str
    description: str
    position_cam_m: tuple[float, float, float]
    roll_pitch_yaw_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)


def rotation_from_roll_pitch_yaw(roll_rad: float, pitch_rad: float, yaw_rad: float) -> np.ndarray:
    """(3, 3) rotation Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr = np.cos(roll_rad), np.sin(roll_rad)
    cp, sp = np.cos(pitch_rad), np.sin(pitch_rad)
    cy, sy = np.cos(yaw_rad), np.sin(yaw_rad)
    rotation_x = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    rotation_y = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rotation_z = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    return rotation_z @ rotation_y @ rotation_x


def roll_pitch_yaw_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """(3,) (roll, pitch, yaw) radians of a (3, 3) rotation Rz(yaw) @ Ry(pitch) @ Rx(roll),
    pitch in [-pi/2, pi/2]; the inverse of rotation_from_roll_pitch_yaw."""
    pitch = np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0))
    return np.array([np.arctan2(rotation[2, 1], rotation[2, 2]), pitch, np.arctan2(rotation[1, 0], rotation[0, 0])])


def mount_from_T_cam_lidar(name: str, description: str, T_cam_lidar: np.ndarray) -> Mount:
    """The Mount whose mount_pose is T_cam_lidar (4, 4, rigid): its translation and its
    rotation as roll, pitch, yaw against the nominal axes."""
    roll_pitch_yaw_rad = roll_pitch_yaw_from_rotation(R_CAM_LIDAR_NOMINAL.T @ T_cam_lidar[:3, :3])
    return Mount(
        name,
        description,
        tuple(float(value) for value in T_cam_lidar[:3, 3]),
        tuple(float(value) for value in np.rad2deg(roll_pitch_yaw_rad)),
    )


def _kitti_2011_09_26_T_cam2_lidar() -> np.ndarray:
    """T_cam_lidar (4, 4) of KITTI's 2011_09_26 calibration into the rectified left colour
    camera (camera 2, the image of KITTI's depth benchmarks): calib_velo_to_cam.txt's R, T,
    then calib_cam_to_cam.txt's R_rect_00 and P_rect_02's offset K^-1 P_rect_02[:, 3]."""
    R_cam0_lidar = np.array(
        [
            [7.533745e-03, -9.999714e-01, -6.166020e-04],
            [1.480249e-02, 7.280733e-04, -9.998902e-01],
            [9.998621e-01, 7.523790e-03, 1.480755e-02],
        ]
    )
    t_cam0_lidar = np.array([-4.069766e-03, -7.631618e-02, -2.717806e-01])
    R_rect_00 = np.array(
        [
            [9.999239e-01, 9.837760e-03, -7.445048e-03],
            [-9.869795e-03, 9.999421e-01, -4.278459e-03],
            [7.402527e-03, 4.351614e-03, 9.999631e-01],
        ]
    )
    K_rect = np.array([[7.215377e02, 0.0, 6.095593e02], [0.0, 7.215377e02, 1.728540e02], [0.0, 0.0, 1.0]])
    t_cam2_rect0 = np.linalg.solve(K_rect, np.array([4.485728e01, 2.163791e-01, 2.745884e-03]))
    T_cam2_lidar = np.eye(4)
    T_cam2_lidar[:3, :3] = R_rect_00 @ R_cam0_lidar
    T_cam2_lidar[:3, 3] = R_rect_00 @ t_cam0_lidar + t_cam2_rect0
    return T_cam2_lidar


MOUNTS: dict[str, Mount] = {
    mount.name: mount
    for mount in (
        mount_from_T_cam_lidar(
            "kitti",
            "KITTI car, its 2011_09_26 calibration into the rectified left colour camera (camera 2): Velodyne "
            "0.27 m behind, 0.08 m above and 0.06 m right of it, pitched and turned by under 1 deg",
            _kitti_2011_09_26_T_cam2_lidar(),
        ),
        Mount(
            "roof", "generic roof rack: LiDAR 0.40 m above and 0.50 m behind a windscreen camera", (0.0, -0.40, -0.50)
        ),
        Mount("bumper", "front bumper: LiDAR 0.80 m below and 1.50 m ahead of a windscreen camera", (0.0, 0.80, 1.50)),
        Mount("camera", "LiDAR at the camera's optical centre: no parallax (for tests and ablations)", (0.0, 0.0, 0.0)),
    )
}


@dataclass(frozen=True)
class MountJitter:
    """Uniform per-view perturbation ranges of a mount: +-horizontal_m on the camera's
    x and z axes (sideways, forward), +-height_m on its y axis (up/down), and
    +-roll_deg, +-pitch_deg, +-yaw_deg about the LiDAR's x, y, z axes."""

    horizontal_m: float = 0.02
    height_m: float = 0.02
    roll_deg: float = 0.5
    pitch_deg: float = 0.5
    yaw_deg: float = 0.5

    def describe(self) -> str:
        """The canonical `mount_jitter` text of these ranges."""
        return ",".join(f"{name}={getattr(self, field)}" for name, field in _JITTER_KEYS.items())


# `mount_jitter` keys -> MountJitter fields.
_JITTER_KEYS = {
    "horizontal": "horizontal_m",
    "height": "height_m",
    "roll": "roll_deg",
    "pitch": "pitch_deg",
    "yaw": "yaw_deg",
}
DEFAULT_MOUNT_JITTER = MountJitter().describe()
# Bounds of a jitter range: a LiDAR stays on its vehicle, and turns less than a right angle.
MAX_JITTER_M, MAX_JITTER_DEG = 10.0, 90.0


def spec_items(text: str, keys, option: str, form: str, hint: str) -> list[tuple[str, str]]:
    """'a=1,b=2' -> [(a, '1'), (b, '2')], keys lower-cased; ValueError naming `option` for a
    part that is not `form` with a key among `keys` (`hint` says what they take), or a key
    given twice (which one counts would be a guess)."""
    items = []
    for part in text.split(","):
        key, equals, value = part.partition("=")
        key = key.strip().lower()
        if key not in keys or not equals:
            raise ValueError(f"{option}: {part.strip()!r} is not {form} with KEY one of {', '.join(keys)} {hint}")
        if key in dict(items):
            raise ValueError(f"{option}: {key} is given twice; give each key once")
        items.append((key, value))
    return items


def parse_mount_jitter(text: str, option: str = "`mount_jitter`") -> MountJitter:
    """'height=0.05,pitch=1' -> MountJitter (unnamed ranges are 0; 'none' is no jitter).

    Raises ValueError with a one-line reason, naming `option`, for an unknown key, a bad
    or negative value.
    """
    ranges = dict.fromkeys(_JITTER_KEYS.values(), 0.0)
    if text.strip().lower() in ("none", "0", ""):
        return MountJitter(**ranges)
    hint = "(metres for horizontal and height, degrees for roll, pitch, yaw), e.g. height=0.05,pitch=1"
    for key, value in spec_items(text, _JITTER_KEYS, option, "KEY=VALUE", hint):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{option}: {key} must be a number, got {value.strip()!r}") from None
        unit, limit = ("m", MAX_JITTER_M) if _JITTER_KEYS[key].endswith("_m") else ("deg", MAX_JITTER_DEG)
        if not 0.0 <= number < limit:
            raise ValueError(f"{option}: {key} must be a range in [0, {limit:g}) {unit}, got {number:g}")
        ranges[_JITTER_KEYS[key]] = number
    return MountJitter(**ranges)


def sample_mount_jitter(jitter: MountJitter, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw one perturbation: (translation_cam_m (3,), roll_pitch_yaw_rad (3,))."""
    unit = rng.uniform(-1.0, 1.0, size=6)
    translation_cam_m = unit[:3] * np.array([jitter.horizontal_m, jitter.height_m, jitter.horizontal_m])
    roll_pitch_yaw_rad = np.deg2rad(unit[3:] * np.array([jitter.roll_deg, jitter.pitch_deg, jitter.yaw_deg]))
    return translation_cam_m, roll_pitch_yaw_rad


def mount_pose(
    mount: Mount,
    translation_jitter_cam_m: np.ndarray | None = None,
    roll_pitch_yaw_jitter_rad: np.ndarray | None = None,
) -> np.ndarray:
    """T_cam_lidar (4, 4) for a mount, optionally perturbed."""
    roll_pitch_yaw_rad = np.deg2rad(np.asarray(mount.roll_pitch_yaw_deg, dtype=np.float64))
    position_cam_m = np.asarray(mount.position_cam_m, dtype=np.float64)
    if roll_pitch_yaw_jitter_rad is not None:
        roll_pitch_yaw_rad = roll_pitch_yaw_rad + roll_pitch_yaw_jitter_rad
    if translation_jitter_cam_m is not None:
        position_cam_m = position_cam_m + translation_jitter_cam_m
    T_cam_lidar = np.eye(4)
    T_cam_lidar[:3, :3] = R_CAM_LIDAR_NOMINAL @ rotation_from_roll_pitch_yaw(*roll_pitch_yaw_rad)
    T_cam_lidar[:3, 3] = position_cam_m
    return T_cam_lidar


def jittered_pose(
    T_frame_lidar: np.ndarray, translation_jitter_cam_m: np.ndarray, roll_pitch_yaw_jitter_rad: np.ndarray
) -> np.ndarray:
    """T_frame_lidar (4, 4) of a LiDAR mounted by calibration (e.g. in a rig's frame),
    perturbed in its own frame by a sample_mount_jitter draw: the horizontal jitter on its
    x and y axes, the height jitter on z, roll, pitch and yaw about x, y, z (as mount_pose
    does for a camera mount)."""
    jitter = np.eye(4)
    jitter[:3, :3] = rotation_from_roll_pitch_yaw(*roll_pitch_yaw_jitter_rad)
    jitter[:3, 3] = R_CAM_LIDAR_NOMINAL.T @ translation_jitter_cam_m
    return T_frame_lidar @ jitter
