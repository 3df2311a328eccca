"""A set of 2048x1536 phone-sized photos made from real COCO photos, in data/coco's layout, to measure what
large photos cost the masks stage and the training loader (bench_masks.py --coco-root, bench_train_input.py
--large-photos).

Each COCO photo is upscaled to 2048x1536 (bicubic) with Gaussian grain (sigma 8) added back, so that its
JPEG (quality 90) holds about as much entropy-coded data as a real photo of that size: about 0.9 MB,
like a 4x4 mosaic of COCO photos at their native resolution (1.0 MB), where the upscaled photo alone
would be 0.4 MB and so decode faster than any real one. Its annotations are scaled with it: polygons
by their coordinates, RLE regions decoded, resized (nearest) and stored as uncompressed RLE. The folder
gets annotations/instances_val2017.json, val2017/*.jpg and the contents.tsv extract would write.

    python benchmarks/large_photos.py SRC_COCO_ROOT DST [--size 1536 2048] [--images N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from cocoseg.acquire.sample import encode_uncompressed_rle
from cocoseg.core.contents import digest_bytes, format_contents
from cocoseg.core.layout import COCO_CONTENTS, annotation_file

SPLIT = "val2017"
GRAIN = 8.0  # sigma of the grain added to the upscaled photo
QUALITY = 90


def scale_segmentation(segmentation: object, old: tuple[int, int], new: tuple[int, int]) -> object:
    """A polygon list or RLE of an ``old`` (height, width) image, for the image resized to ``new``."""
    sy, sx = new[0] / old[0], new[1] / old[1]
    if isinstance(segmentation, list):
        return [[v * (sx if i % 2 == 0 else sy) for i, v in enumerate(poly)] for poly in segmentation]
    rle = (
        mask_utils.frPyObjects(segmentation, *old)
        if isinstance(segmentation["counts"], list)
        else segmentation
    )
    mask = mask_utils.decode(rle)
    return encode_uncompressed_rle(cv2.resize(mask, (new[1], new[0]), interpolation=cv2.INTER_NEAREST))


def make_large_set(
    src: Path, dst: Path, size: tuple[int, int] = (1536, 2048), images: int | None = None, seed: int = 0
) -> Path:
    """``dst`` in data/coco's layout: the first ``images`` photos of ``src`` at ``size`` (height, width)."""
    coco = json.loads(annotation_file(src, SPLIT).read_text())
    chosen = sorted(coco["images"], key=lambda im: im["id"])[:images]
    keep = {im["id"]: (im["height"], im["width"]) for im in chosen}
    rng = np.random.default_rng(seed)
    (dst / SPLIT).mkdir(parents=True, exist_ok=True)
    digests = {}
    for image in chosen:
        photo = cv2.resize(
            cv2.imread(str(src / SPLIT / image["file_name"])),
            (size[1], size[0]),
            interpolation=cv2.INTER_CUBIC,
        )
        photo = np.clip(photo + rng.normal(0, GRAIN, photo.shape), 0, 255).astype(np.uint8)
        data = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1].tobytes()
        (dst / SPLIT / image["file_name"]).write_bytes(data)
        digests[f"{SPLIT}/{image['file_name']}"] = digest_bytes(data)
        image.update(height=size[0], width=size[1])
    annotations = [
        {**ann, "segmentation": scale_segmentation(ann["segmentation"], keep[ann["image_id"]], size)}
        for ann in coco["annotations"]
        if ann["image_id"] in keep
    ]
    out = annotation_file(dst, SPLIT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**coco, "images": chosen, "annotations": annotations}))
    digests[f"annotations/instances_{SPLIT}.json"] = digest_bytes(out.read_bytes())
    (dst / COCO_CONTENTS).write_text(format_contents(digests))
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "src", type=Path, help="a COCO root with annotations/instances_val2017.json, val2017/"
    )
    parser.add_argument("dst", type=Path)
    parser.add_argument("--size", type=int, nargs=2, default=[1536, 2048], metavar=("H", "W"))
    parser.add_argument("--images", type=int, help="default: all")
    args = parser.parse_args()
    make_large_set(args.src, args.dst, tuple(args.size), args.images)
    sizes = [p.stat().st_size for p in (args.dst / SPLIT).glob("*.jpg")]
    print(
        f"{len(sizes)} photos of {args.size[1]}x{args.size[0]}, {np.mean(sizes) / 1e3:.0f} kB on average -> {args.dst}"
    )


if __name__ == "__main__":
    main()
