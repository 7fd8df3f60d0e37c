"""Intrinsics policies: flag and sidecar first, then EXIF 35 mm-equivalent focal
length, the teacher's own focal length, a fixed or a random field of view."""

import json
import math

import numpy as np
import pytest
from PIL import Image
from simlidar.teachers import IntrinsicsError, parse_fov_range, parse_policy, resolve_intrinsics
from simlidar.teachers.intrinsics import focal_px_from_35mm, read_exif_focal_35mm


def photo_with_exif(path, size=(4000, 3000), focal_35mm=None, orientation=None):
    exif = Image.Exif()
    if focal_35mm is not None:
        exif.get_ifd(0x8769)[0xA405] = focal_35mm
    if orientation is not None:
        exif[0x0112] = orientation
    Image.new("RGB", size, (90, 120, 150)).save(path, exif=exif)
    return path


def test_exif_35mm_equivalent_focal_is_read_and_converted_by_the_diagonal(tmp_path):
    photo = photo_with_exif(tmp_path / "phone.jpg", focal_35mm=26)
    assert read_exif_focal_35mm(photo) == 26.0
    assert read_exif_focal_35mm(photo_with_exif(tmp_path / "bare.jpg")) is None
    # 26 mm on a 36 x 24 mm frame (diagonal 43.27 mm) over a 5000 px diagonal.
    assert focal_px_from_35mm(26, 4000, 3000) == pytest.approx(26 * 5000 / math.hypot(36, 24))
    # A 3:2 photo gives the width-based value: 36 mm of film = the photo's width.
    assert focal_px_from_35mm(50, 3600, 2400) == pytest.approx(50 / 36 * 3600)
    K, source = resolve_intrinsics(photo, 4000, 3000, None, None, policy=("exif", "random"))
    assert source == "exif 35mm-equivalent 26 mm"
    assert K[0, 0] == K[1, 1] == pytest.approx(3004.6, abs=0.1) and (K[0, 2], K[1, 2]) == (1999.5, 1499.5)


def test_exif_focal_holds_for_a_rotated_photo(tmp_path):
    photo = photo_with_exif(tmp_path / "portrait.jpg", focal_35mm=26, orientation=6)
    upright, _ = resolve_intrinsics(photo, 3000, 4000, None, None, policy=("exif",))
    assert upright[0, 0] == pytest.approx(3004.6, abs=0.1) and (upright[0, 2], upright[1, 2]) == (1499.5, 1999.5)


def test_teacher_focal_then_fixed_fov_as_fallbacks(tmp_path):
    photo = photo_with_exif(tmp_path / "a.jpg", size=(640, 480))
    K, source = resolve_intrinsics(photo, 640, 480, None, 90.0, policy=("exif", "teacher", "fov"), teacher_focal_px=500)
    assert source == "teacher" and K[0, 0] == 500.0
    K, source = resolve_intrinsics(photo, 640, 480, None, 90.0, policy=("exif", "teacher", "fov"))
    assert source == "fov 90 deg" and K[0, 0] == pytest.approx(320.0)
    with pytest.raises(IntrinsicsError, match=r"no EXIF .*; the teacher estimates no focal length.*`fov_deg` DEG"):
        resolve_intrinsics(photo, 640, 480, None, None, policy=("exif", "teacher"))


def test_random_fov_is_drawn_from_the_range_per_photo(tmp_path):
    photo = photo_with_exif(tmp_path / "a.jpg", size=(640, 480))
    fovs = []
    for seed in range(20):
        K, source = resolve_intrinsics(
            photo, 640, 480, None, None, policy=("random",), fov_range_deg=(50, 80), rng=np.random.default_rng(seed)
        )
        hfov = math.degrees(2 * math.atan(320 / K[0, 0]))
        assert source == f"random fov {hfov:.2f} deg" and 50 <= hfov <= 80
        fovs.append(hfov)
    assert np.std(fovs) > 3
    same, _ = resolve_intrinsics(photo, 640, 480, None, None, policy=("random",), rng=np.random.default_rng(0))
    again, _ = resolve_intrinsics(photo, 640, 480, None, None, policy=("random",), rng=np.random.default_rng(0))
    assert np.array_equal(same, again)


def test_flag_and_sidecar_win_over_every_policy(tmp_path):
    photo = photo_with_exif(tmp_path / "a.jpg", size=(640, 480), focal_35mm=26)
    K, source = resolve_intrinsics(photo, 640, 480, (700, 710, 300, 200), None, policy=("exif",))
    assert source == "flag" and K[1, 1] == 710
    (tmp_path / "a.json").write_text(json.dumps({"fx": 600, "fy": 600, "cx": 319.5, "cy": 239.5}))
    K, source = resolve_intrinsics(photo, 640, 480, None, 90.0, policy=("exif", "random"), rng=np.random.default_rng())
    assert source == "sidecar" and K[0, 0] == 600


def test_policy_and_range_parsing():
    assert parse_policy("auto", 70.0) == ("fov",) and parse_policy("auto", None) == ("random",)
    assert parse_policy("exif, teacher,random", None) == ("exif", "teacher", "random")
    with pytest.raises(IntrinsicsError, match="exif, teacher, fov, random"):
        parse_policy("exif,guess", None)
    with pytest.raises(IntrinsicsError, match="needs `fov_deg`"):
        parse_policy("fov", None)
    assert parse_fov_range("50,80") == (50.0, 80.0)
    with pytest.raises(IntrinsicsError, match="MIN <= MAX"):
        parse_fov_range("80,50")
