"""What one parameter or one input may cost: the caps on processes, sizes and report lengths, in one place.

A cap is either a refusal (a value out of range fails with one line, see core/params.py) or, for process
counts, a ceiling applied with a warning line that says what was asked and what is used: never a silent
substitution.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cocoseg.core.machine import usable_cores

log = logging.getLogger(__name__)

MAX_PARAMS_BYTES = 1 << 20  # params.yaml is a few kB; a MB is no parameter file
MAX_PARAMS_NODES = 100_000  # YAML values after aliases are expanded (params.yaml has about 150)
MAX_IMAGE_SIDE = 4096  # train.image_size, and the input size a model file records
MAX_CLASSES = 65535  # class ids go into uint16 masks beyond 254 classes, where 65535 is void: ids 0..65534
MAX_LOGITS = (
    1 << 28
)  # classes x input pixels of one image's logits: 1 GiB of float32 (1,204 classes at 472 px)
MAX_SAMPLE_IMAGES = 10_000  # the offline sample is a toy (about 30 MB of memory per 1000 images)
MAX_SAMPLE_SIDE = 1024  # every COCO image is at most 640 pixels a side
MAX_DOWNLOAD_WORKERS = 64  # parallel connections to one server
MAX_SPEED_BATCHES = 1000  # evaluate's timed forward passes ...
SPEED_SECONDS = 60.0  # ... and the time they may take, whichever ends first
MAX_PREDICT_PIXELS = 64_000_000  # an image predict decodes (the masks stage's default budget too)
MAX_LISTED = 1000  # report.json lists the first N skipped records of a kind; its counts cover all
# One annotation, one image (the masks stage). Working memory is about 45 bytes per pixel step of a
# polygon's edges (pycocotools stores each step at 5x resolution) and about 110 bytes per character of
# an RLE counts string; a real COCO annotation needs well under 1% of each.
MAX_POLYGON_COORDINATES = 1_000_000  # of one annotation, all its polygons together
MAX_POLYGON_STEPS = 10_000_000  # pixels its edges walk (their length within one image size of the image)
MAX_RLE_CHARS = 4_000_000  # of one compressed counts string; several are decoded at most this many at once
MAX_REGION_PIXELS = 1 << 29  # the decoded boxes of one image's annotations together, as uint8 pixels


def cap_processes(key: str, asked: int) -> int:
    """``asked`` worker processes, or the usable cores where it is more, with a line saying so.

    Each process gets a core at most: more only compete for the same cores (and each holds its own
    memory), so 200 processes for 3 images, or 64 loader workers on 2 cores, only cost.
    """
    cores = usable_cores()
    if asked <= cores:
        return asked
    log.warning(
        "%s: %d processes asked, %d used: this process may use %d CPU cores, and more processes "
        "than cores only compete for them",
        key,
        asked,
        cores,
        cores,
    )
    return cores


class ImageOverBudget(OSError):
    """An image whose header gives more pixels than allowed; caught where unreadable images are skipped."""


def check_pixels(path: Path, max_pixels: int, key: str) -> None:
    """ImageOverBudget when the header of ``path`` gives more than ``max_pixels`` pixels; decodes nothing.

    A header Pillow cannot read is left to the decoder to judge (a 40000x40000 header in a 200-byte file
    is caught here, before OpenCV would allocate for it)."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = (
        Image.MAX_IMAGE_PIXELS,
        None,
    )  # the budget here replaces Pillow's bomb check
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError):
        return
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    if width * height > max_pixels:
        raise ImageOverBudget(
            f"image too large ({width}x{height} is {width * height / 1e6:.1f} megapixels, over "
            f"the budget of {max_pixels / 1e6:.1f} ({key}))"
        )
