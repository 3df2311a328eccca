"""One split of a COCO-format export, put into the layout the masks stage reads.

``annotations/instances_<split>.json`` gets the split's JSON byte for byte, and ``<split>/<name>`` each
image the JSON lists, by ``image_file_name`` (its ``file_name``, subfolders kept, else the last part of
its ``coco_url``). Files the JSON does not list stay behind; a listed image that is not there is left
out (the masks stage reports it), unless none of them is: then the images folder is surely the wrong one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cocoseg.core.errors import UserError
from cocoseg.core.layout import annotation_member, image_file_name

log = logging.getLogger(__name__)


class ExportError(UserError):
    """A split's JSON that cannot be read, or an images folder that holds none of its images."""


@dataclass
class Placed:
    """What ``place_split`` wrote: (source file, path under the target) pairs, and what it left out."""

    files: list[tuple[Path, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # listed images not in the images folder
    unusable: int = 0  # image records without a usable relative file name (the masks stage names each)


def read_image_names(annotations: Path) -> tuple[list[str], int]:
    """The distinct image file names a COCO JSON lists, in order, and how many records have none usable."""
    try:
        data = json.loads(annotations.read_bytes())
    except FileNotFoundError:
        raise ExportError(f"{annotations}: annotation file not found") from None
    except (OSError, ValueError, RecursionError) as err:
        raise ExportError(f"{annotations}: not a readable JSON file ({type(err).__name__}: {err})") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise ExportError(f"{annotations}: not a COCO annotation file (no 'images' list at the top level)")
    names = [image_file_name(image) if isinstance(image, dict) else None for image in images]
    usable = [n for n in names if n is not None]
    return list(dict.fromkeys(usable)), len(names) - len(usable)


def place_split(
    split: str, annotations: Path, images: Path, target: Path, bring: Callable[[Path, Path], object]
) -> Placed:
    """Put one split under ``target`` with ``bring(source, destination)`` (a link or a copy)."""
    names, unusable = read_image_names(annotations)
    placed = Placed(unusable=unusable)
    for name in names:
        source = images / name
        if source.is_file():
            placed.files.append((source, f"{split}/{name}"))
        else:
            placed.missing.append(name)
    if names and not placed.files:
        raise ExportError(
            f"{images}: none of the {len(names)} images {annotations} lists is there (the first: "
            f"{names[0]!r}); is this the split's images folder?"
        )
    placed.files.insert(0, (annotations, annotation_member(split)))
    for source, relative in placed.files:
        bring(source, target / relative)
    if placed.missing:
        log.warning(
            "%s: %d of the %d images %s lists are not in %s (the first: %r); left out",
            split,
            len(placed.missing),
            len(names),
            annotations.name,
            images,
            placed.missing[0],
        )
    return placed
