"""Build a COCO mirror in the official layout from an unpacked COCO folder, and print its MD5s.

    python -m cocoseg.acquire.mirror ../shared/data/coco2017-val-mini /tmp/coco-mirror
    python -m http.server 8000 --bind 127.0.0.1 --directory /tmp/coco-mirror

Layout: <dest>/zips/<split>.zip, <dest>/annotations/annotations_trainval2017.zip and
<dest>/<split>/<file_name>, i.e. what ``data.coco.base_url`` expects of any mirror.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import zipfile
from pathlib import Path

from cocoseg.acquire.http import md5_file
from cocoseg.core.layout import ANNOTATIONS_ARCHIVE, annotation_member, archive_stem, image_archive

log = logging.getLogger(__name__)


def build_mirror(src: Path, dest: Path) -> dict[str, str]:
    """Return {archive stem: MD5} of the archives written, for ``data.coco.md5``."""
    splits = sorted(p.stem.removeprefix("instances_") for p in (src / "annotations").glob("instances_*.json"))
    if not splits:
        raise FileNotFoundError(f"{src}/annotations: no instances_<split>.json files")
    (dest / "zips").mkdir(parents=True, exist_ok=True)
    (dest / "annotations").mkdir(parents=True, exist_ok=True)
    annotations_zip = dest / "annotations" / ANNOTATIONS_ARCHIVE
    with zipfile.ZipFile(annotations_zip, "w") as zf:
        for split in splits:
            zf.write(src / annotation_member(split), annotation_member(split))
    md5s = {archive_stem(ANNOTATIONS_ARCHIVE): md5_file(annotations_zip)}
    for split in splits:
        images = sorted((src / split).iterdir())
        with zipfile.ZipFile(dest / "zips" / image_archive(split), "w", zipfile.ZIP_STORED) as zf:
            for image in images:
                zf.write(image, f"{split}/{image.name}")
        shutil.copytree(src / split, dest / split, dirs_exist_ok=True)  # single files, for subset mode
        md5s[split] = md5_file(dest / "zips" / image_archive(split))
        log.info("%s: %d images", split, len(images))
    return md5s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("src", type=Path, help="folder with annotations/instances_<split>.json and <split>/")
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, md5 in build_mirror(args.src, args.dest).items():
        log.info("data.coco.md5.%s=%s", name, md5)


if __name__ == "__main__":
    main()
