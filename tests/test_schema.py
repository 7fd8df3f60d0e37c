import io

import numpy as np
import pytest
from PIL import Image
from simlidar.pipeline import schema


def test_depth_png_round_trips_to_quantisation():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 250.0, size=(37, 53)).astype(np.float32)
    depth[0, :5] = 0.0
    decoded = schema.decode_depth_png(schema.encode_depth_png(depth))
    assert decoded.dtype == np.float32
    assert np.abs(decoded - depth).max() <= 0.5 / 256 + 1e-6
    assert (decoded[0, :5] == 0).all()


def test_depth_png_stores_metres_times_256_as_uint16():
    encoded = Image.open(io.BytesIO(schema.encode_depth_png(np.array([[10.0, 1.5]]))))
    assert encoded.mode.startswith("I;16")
    assert np.asarray(encoded).tolist() == [[2560, 384]]


def test_unrepresentable_depths_become_no_value():
    depth = np.array([[np.nan, np.inf, -3.0, 300.0, 255.9]])
    decoded = schema.decode_depth_png(schema.encode_depth_png(depth))
    assert decoded[0, :4].tolist() == [0, 0, 0, 0]
    assert decoded[0, 4] == pytest.approx(255.9, abs=1 / 256)


def test_decoding_an_8_bit_png_is_refused():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buffer, format="PNG")
    with pytest.raises(ValueError, match="16-bit"):
        schema.decode_depth_png(buffer.getvalue())


def test_keys_have_no_dots_or_slashes():
    assert schema.sanitize_key("city/2011.09.26/0001") == "city__2011_09_26__0001"
    assert schema.is_valid_key("city__2011_09_26__0001-v0")
    assert not schema.is_valid_key("a.b")
    assert not schema.is_valid_key("a/b")
