"""COCO 2017 from a base URL laid out like images.cocodataset.org: whole archives, or a seeded subset.

Layout: ``<base>/zips/<split>.zip`` (images), ``<base>/annotations/annotations_trainval2017.zip``,
``<base>/<split>/<file_name>`` (single images). Subset mode writes ``raw_dir/<split>/*.jpg`` and
``raw_dir/annotations/instances_<split>.json`` holding exactly the images that arrived.
"""

from __future__ import annotations

import functools
import logging
import os
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from cocoseg.acquire.http import STALL_SECONDS, DownloadError, InsufficientSpaceError, download_file
from cocoseg.core.files import write_json
from cocoseg.core.layout import ANNOTATIONS_ARCHIVE, annotation_file, image_archive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubsetResult:
    requested: int  # images selected: min(max_images, candidates); fetched + reused + failed == requested
    fetched: int
    reused: int  # already on disk and decodable
    failed: int
    failures: tuple[tuple[str, str], ...]  # (file_name, reason)


def rewrite_url(coco_url: str | None, base_url: str, split: str, file_name: str) -> str:
    """Move ``coco_url`` onto ``base_url``, keeping its path; without one, ``<base>/<split>/<file_name>``."""
    base = base_url.rstrip("/")
    if coco_url:
        return base + urllib.parse.urlsplit(coco_url).path
    return f"{base}/{split}/{urllib.parse.quote(file_name)}"


def download_archives(
    base_url: str,
    splits: list[str],
    raw_dir: str | os.PathLike[str],
    md5s: dict[str, str | None],
    sizes: dict[str, int | None],
    stall_seconds: float = STALL_SECONDS,
) -> list[Path]:
    """Fetch the annotations archive and ``<split>.zip`` for each split into ``raw_dir``."""
    base = base_url.rstrip("/")
    urls = {ANNOTATIONS_ARCHIVE: f"{base}/annotations/{ANNOTATIONS_ARCHIVE}"}
    urls.update({image_archive(split): f"{base}/zips/{image_archive(split)}" for split in splits})
    # An archive fetched without a checksum should be the caller's explicit choice, never a missing key.
    missing = [name for name in urls if name not in md5s]
    if missing:
        raise ValueError(f"no MD5 given for {missing}; pass None for an archive to skip its check")
    return [
        download_file(
            url,
            Path(raw_dir) / name,
            expected_md5=md5s[name],
            expected_size=sizes.get(name),
            stall_seconds=stall_seconds,
        )
        for name, url in urls.items()
    ]


def select_images(
    annotations_json: dict[str, Any], max_images: int, seed: int, category_ids: set[int] | None
) -> list[dict[str, Any]]:
    """Pick up to ``max_images`` image entries with a seeded RNG; returned in id order."""
    images = sorted(annotations_json["images"], key=lambda image: image["id"])
    if category_ids is not None:
        # a record may lack category_id or hold an unhashable one: it simply does not select its image
        wanted = {
            a.get("image_id")
            for a in annotations_json["annotations"]  # ids of any JSON type: ints only
            if type(a.get("category_id")) is int
            and a["category_id"] in category_ids
            and type(a.get("image_id")) is int
        }
        images = [image for image in images if image["id"] in wanted]
    if max_images > len(images):
        log.warning("asked for %d images but only %d qualify; taking all of them", max_images, len(images))
    picks = np.random.default_rng(seed).choice(len(images), size=min(max_images, len(images)), replace=False)
    return [images[i] for i in sorted(picks)]


def download_subset(
    base_url: str,
    split: str,
    raw_dir: str | os.PathLike[str],
    annotations_json: dict[str, Any],
    max_images: int,
    seed: int,
    category_ids: set[int] | None,
    workers: int = 16,
    *,
    retries: int = 5,
    backoff: float = 0.5,
    timeout: float = 60,
    progress: bool = True,
    stall_seconds: float = STALL_SECONDS,
) -> SubsetResult:
    """Fetch a seeded subset of one split's images in parallel and write its filtered annotations.
    DownloadError when no image arrives (none qualifies, or all failed); a full disk stops every fetch."""
    chosen = select_images(annotations_json, max_images, seed, category_ids)
    image_dir = Path(raw_dir) / split
    image_dir.mkdir(parents=True, exist_ok=True)
    outcomes = _unusable_records(chosen)  # image id -> "fetched" | "reused" | failure reason
    fetch = functools.partial(_fetch_image, retries=retries, backoff=backoff, limits=(timeout, stall_seconds))
    wanted = [image for image in chosen if image["id"] not in outcomes]
    outcomes |= _fetch_all(wanted, base_url, split, image_dir, fetch, workers, progress)
    ok_ids = {i for i, outcome in outcomes.items() if outcome in ("fetched", "reused")}
    result = _summarise(chosen, outcomes, ok_ids)
    if not ok_ids:
        first = f"; the first failure: {': '.join(result.failures[0])}" if result.failures else ""
        raise DownloadError(
            f"{split}: no image of the subset could be fetched ({result.requested} selected{first})"
        )
    write_json(annotation_file(Path(raw_dir), split), _filter_annotations(annotations_json, ok_ids))
    return result  # the download stage logs its counts in words


def _fetch_all(
    images: list[dict[str, Any]],
    base_url: str,
    split: str,
    image_dir: Path,
    fetch: Callable[[str, Path], str],
    workers: int,
    progress: bool,
) -> dict[int, str]:
    """Fetch images on a thread pool: image id -> "fetched" | "reused" | the failure's reason.
    A full disk cancels what is queued and stops the download."""
    outcomes = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(
                fetch,
                rewrite_url(image.get("coco_url"), base_url, split, image["file_name"]),
                image_dir / image["file_name"],
            ): image
            for image in images
        }
        done = tqdm(as_completed(futures), total=len(futures), unit="img", desc=split, disable=not progress)
        for future in done:
            image = futures[future]
            try:
                outcomes[image["id"]] = future.result()
            except InsufficientSpaceError:
                pool.shutdown(cancel_futures=True)
                raise
            except (DownloadError, _UndecodableImage) as err:
                outcomes[image["id"]] = str(err)
                log.warning("could not fetch %s: %s", image["file_name"], err)
    return outcomes


def _unusable_records(chosen: list[dict[str, Any]]) -> dict[int, str]:
    """The chosen images that must not be fetched, with the reason: a file_name that would leave the
    folder, a coco_url that is no URL (from a downloaded JSON: any JSON type may stand there)."""
    outcomes = {}
    for image in chosen:
        if not _is_safe_name(image.get("file_name")):
            outcomes[image["id"]] = f"unsafe file_name {image.get('file_name')!r}"
        elif image.get("coco_url") is not None and not isinstance(image["coco_url"], str):
            outcomes[image["id"]] = f"coco_url {image['coco_url']!r} is not a URL"
        else:
            continue
        log.warning("not fetching image %s: %s", image["id"], outcomes[image["id"]])
    return outcomes


def _summarise(chosen: list[dict[str, Any]], outcomes: dict[int, str], ok_ids: set[int]) -> SubsetResult:
    failures = tuple(
        (str(image.get("file_name")), outcomes[image["id"]]) for image in chosen if image["id"] not in ok_ids
    )
    return SubsetResult(
        requested=len(chosen),
        fetched=sum(o == "fetched" for o in outcomes.values()),
        reused=sum(o == "reused" for o in outcomes.values()),
        failed=len(failures),
        failures=failures,
    )


class _UndecodableImage(Exception):
    pass


def _is_safe_name(file_name: object) -> bool:
    return (
        isinstance(file_name, str)
        and file_name not in ("", ".", "..")
        and "/" not in file_name
        and "\\" not in file_name
        and "\0" not in file_name
    )


def _decodes(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()  # decodes every pixel: raises on a truncated or corrupt file
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def _fetch_image(url: str, path: Path, retries: int, backoff: float, limits: tuple[float, float]) -> str:
    """Return "reused" or "fetched"; raise DownloadError or _UndecodableImage. ``limits``: (socket timeout,
    stall budget)."""
    if path.exists() and _decodes(path):
        return "reused"
    for attempt in (1, 2):
        try:
            download_file(
                url,
                path,
                retries=retries,
                backoff=backoff,
                timeout=limits[0],
                progress=False,
                sidecar=False,
                stall_seconds=limits[1],
            )
        except DownloadError:
            path.with_name(path.name + ".part").unlink(missing_ok=True)  # an image is too small to resume
            raise
        if _decodes(path):
            return "fetched"
        path.unlink()
        log.warning("%s does not decode as an image (fetch %d of 2); deleted", path, attempt)
    raise _UndecodableImage(f"{url} does not decode as an image after 2 fetches")


def _filter_annotations(annotations_json: dict[str, Any], image_ids: set[int]) -> dict[str, Any]:
    """The JSON restricted to ``image_ids``: their images and annotations; other keys kept as they are."""
    return {
        **annotations_json,
        "images": [image for image in annotations_json["images"] if image["id"] in image_ids],
        "annotations": [
            a
            for a in annotations_json["annotations"]
            if type(a.get("image_id")) is int and a["image_id"] in image_ids
        ],
    }
