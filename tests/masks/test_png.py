import io

import cv2
import numpy as np
import pytest
from PIL import Image

from cocoseg.masks.png import encode_label_png


def _label_map(dtype, shape=(37, 53), seed=0) -> np.ndarray:
    """Runs of a few values, as in a mask, plus the dtype's extremes so byte order shows."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    labels = rng.choice(np.array([0, 1, 2, 255, 256 % (top + 1), top], dtype), size=shape)
    labels[:, : shape[1] // 2] = 0
    return labels


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_roundtrip_through_opencv_and_pillow(dtype):
    labels = _label_map(dtype)
    data = encode_label_png(labels)

    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == dtype and np.array_equal(decoded, labels)
    with Image.open(io.BytesIO(data)) as im:
        im.verify()  # checks every chunk's CRC
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == ("L" if dtype == np.uint8 else "I;16")
        assert np.array_equal(np.asarray(im).astype(dtype), labels)


def test_same_array_same_bytes_and_one_row_one_column():
    labels = _label_map(np.uint16, seed=3)
    assert encode_label_png(labels) == encode_label_png(labels.copy())
    for shape in [(1, 9), (9, 1)]:
        small = _label_map(np.uint16, shape)
        assert np.array_equal(cv2.imdecode(np.frombuffer(encode_label_png(small), np.uint8),
                                           cv2.IMREAD_UNCHANGED).reshape(shape), small)


def test_non_contiguous_input_is_encoded_as_seen():
    labels = _label_map(np.uint8, (40, 60))[::2, 1::3]
    decoded = cv2.imdecode(np.frombuffer(encode_label_png(labels), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded, labels)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.int32), np.zeros((4, 4, 3), np.uint8),
                                 np.zeros((0, 4), np.uint8)])
def test_rejects_what_is_not_a_label_map(bad):
    with pytest.raises(ValueError, match="array|empty"):
        encode_label_png(bad)
