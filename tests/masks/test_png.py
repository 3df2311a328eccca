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
        assert np.array_equal(
            cv2.imdecode(np.frombuffer(encode_label_png(small), np.uint8), cv2.IMREAD_UNCHANGED).reshape(
                shape
            ),
            small,
        )


def test_non_contiguous_input_is_encoded_as_seen():
    labels = _label_map(np.uint8, (40, 60))[::2, 1::3]
    decoded = cv2.imdecode(np.frombuffer(encode_label_png(labels), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded, labels)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.int32), np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4), np.uint8)]
)
def test_rejects_what_is_not_a_label_map(bad):
    with pytest.raises(ValueError, match="array|empty"):
        encode_label_png(bad)


def _masks(count: int = 24) -> list[np.ndarray]:
    """COCO-like label maps: filled polygons of a few classes (uint8) and their instance maps (uint16)."""
    rng = np.random.default_rng(7)
    out = []
    for _ in range(count):
        h, w = int(rng.integers(200, 640)), int(rng.integers(200, 640))
        inst = np.zeros((h, w), np.uint16)
        for k in range(int(rng.integers(1, 40))):
            pts = rng.integers(0, [w, h], size=(int(rng.integers(3, 12)), 2)).astype(np.int32)
            cv2.fillPoly(inst, [pts], k + 1)
        out += [(inst % 81).astype(np.uint8), inst]
    return out


def test_bytes_are_a_function_of_the_pixels_alone(tmp_path):
    """Issue 9: one run of 36 wrote 50 masks with equal pixels but other bytes. The encoder's input is
    canonical (filter 0 on every row); its output was checked here not to depend on what ISA-L might
    see besides the pixels: a fresh process, the allocator's state (freed buffers of other sizes and
    contents), and where in memory the rows lie."""
    import hashlib
    import subprocess
    import sys

    masks = _masks()
    digest = lambda data: hashlib.md5(data).hexdigest()  # noqa: E731
    first = [digest(encode_label_png(m)) for m in masks]
    rng = np.random.default_rng(1)
    churned = []
    for m in masks:
        junk = [rng.integers(0, 256, int(rng.integers(1 << 10, 1 << 21)), np.uint8) for _ in range(3)]
        del junk  # freed blocks of other sizes and contents for the next allocation to reuse
        offset = int(rng.integers(0, 64))
        buf = np.empty(m.nbytes + 64, np.uint8)[offset : offset + m.nbytes].view(m.dtype).reshape(m.shape)
        buf[...] = m  # the same pixels at another address and alignment
        churned.append(digest(encode_label_png(buf)))
    assert churned == first
    np.savez(tmp_path / "masks.npz", *masks)
    script = (
        "import hashlib, sys, numpy as np; from cocoseg.masks.png import encode_label_png; "
        f"f = np.load({str(tmp_path / 'masks.npz')!r}); "
        "print(' '.join(hashlib.md5(encode_label_png(f[k])).hexdigest() for k in f.files))"
    )
    fresh = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert fresh.split() == first
