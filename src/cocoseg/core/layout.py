"""Every on-disk name and convention the stages share, defined once.

The stages talk to each other only through files; this module is the contract between them:

    data/raw/download/     the sample's or COCO's archives, or a user's archive, manifest.json
                                                                             (download -> extract)
    data/raw/local/<split>/  annotations/instances_<split>.json, <split>/<file_name>: one split of
                           the user's own files, data.local.splits          (import@<split> -> extract)
    data/coco/     annotations/instances_<split>.json, <split>/<file_name>,
                   contents.tsv                                              (extract -> masks, train)
    data/masks/    semantic/<split>/<stem>.png, instance/<split>/..., labels.json, split.json,
                   manifest.tsv, report.json, preview/                        (masks -> train, evaluate)

Images are named across stages by an *item*, the string ``"<split>/<file_name>"`` of ``split.json``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

VOID = 255  # label of pixels that are ignored by the loss and the metrics (crowds, contested pixels)
VOID_WIDE = 65535  # the same in the uint16 semantic masks of more than 255 classes (LVIS has 1,203)

# --- data/raw: the official COCO 2017 archives ------------------------------------------------------

ANNOTATIONS_ARCHIVE = "annotations_trainval2017.zip"
SPLITS = ("train2017", "val2017")
COCO_MD5 = {  # archive stem -> MD5 published by COCO (the params.yaml defaults)
    "annotations_trainval2017": "f4bbac642086de4f52a3fdda2de5fa2c",
    "val2017": "442b8da7639aecaf257c1dceb8ba8c80",
    "train2017": "cced6f7f71b7629ddf16f17bbcfab6b2",
}
COCO_SIZES: dict[str, int | None] = {  # archive name -> bytes; train2017.zip's size is not published
    ANNOTATIONS_ARCHIVE: 252907541,
    "val2017.zip": 815585330,
    "train2017.zip": None,
}
MANIFEST = "manifest.json"  # the download stage's note to extract: archives to unzip, folders to copy
RAW_DOWNLOAD = "download"  # data/raw/download: the download stage's output
RAW_LOCAL = "local"  # data/raw/local/<split>: the import stage's output, one folder per split


def image_archive(split: str) -> str:
    return f"{split}.zip"


def archive_stem(archive: str) -> str:
    return archive.removesuffix(".zip")


def archive_names(splits: tuple[str, ...] | list[str]) -> list[str]:
    """The annotations archive, then one image archive per split."""
    return [ANNOTATIONS_ARCHIVE, *(image_archive(split) for split in splits)]


# --- data/coco: the unpacked COCO layout --------------------------------------------------------------


def annotation_member(split: str) -> str:
    """Path of a split's instances file inside the annotations archive and under a COCO root."""
    return f"annotations/instances_{split}.json"


def annotation_file(coco_root: Path, split: str) -> Path:
    return Path(coco_root) / annotation_member(split)


MAX_SPLIT_NAME = 100
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def split_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a split, or None when it can.

    A split's name is a folder under data/coco and data/masks, part of a DVC stage name (import@<split>)
    and a word on the import stage's command line: letters, digits, ``_``, ``-`` and ``.`` only, not
    starting with ``.`` (hidden) or ``-`` (an option), and never ``contents.tsv`` (data/coco's list).
    """
    if not isinstance(name, str) or not name:
        return "is not a non-empty string"
    if not _SPLIT_NAME.fullmatch(name):
        return "must be letters, digits, '_', '-' and '.', starting with a letter, digit or '_'"
    if len(name) > MAX_SPLIT_NAME:
        return f"is longer than {MAX_SPLIT_NAME} characters"
    if name == COCO_CONTENTS:
        return f"is the name of data/coco's own {COCO_CONTENTS}"
    return None


MAX_NAME_BYTES = 255  # one path component, on every common file system
_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\\]")  # control characters (tab, newline), backslash


def relative_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a file's path under its split's folder, or None when it can.

    Subfolders are allowed (``JPEGImages/x.jpg``, as CVAT and labelme write them); an absolute path,
    ``..`` or ``.`` parts, hidden parts, empty parts, backslashes, control characters (a tab or a newline
    would split a row of manifest.tsv) and components longer than file systems allow are not.
    """
    if not isinstance(name, str) or not name:
        return "is not a non-empty string"
    if _UNSAFE_CHARACTERS.search(name):
        return "holds a backslash or a control character"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    parts = name.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return "has an empty, hidden, '.' or '..' part"
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts):
        return f"has a part longer than {MAX_NAME_BYTES} bytes"
    return None


def image_file_name(image: Mapping[str, Any]) -> str | None:
    """An image record's path relative to its split's image folder: its ``file_name``, or, where the record has
    none (LVIS-style files name images by URL only), the last part of its ``coco_url``. None when neither
    gives a usable relative path (``relative_name_problem``)."""
    name = image.get("file_name")
    if name is None and isinstance(image.get("coco_url"), str):
        name = unquote(PurePosixPath(urlsplit(image["coco_url"]).path).name)
    return name if relative_name_problem(name) is None else None


def make_item(split: str, file_name: str) -> str:
    return f"{split}/{file_name}"


def split_item(item: str) -> tuple[str, str]:
    """``"<split>/<file_name>"`` -> (split, file_name)."""
    split, file_name = item.split("/", 1)
    return split, file_name


def image_path(coco_root: Path, item: str) -> Path:
    split, file_name = split_item(item)
    return Path(coco_root) / split / file_name


# --- data/masks: what the masks stage writes ---------------------------------------------------------

SEMANTIC = "semantic"  # (H, W) uint8 class ids, VOID where ignored (uint16 and VOID_WIDE: label_dtype)
INSTANCE = "instance"  # (H, W) uint16 instance ids, plus one instances.jsonl table per split
PREVIEW = "preview"
LABELS_FILE = "labels.json"
SPLIT_FILE = "split.json"
REPORT_FILE = "report.json"
COCO_CONTENTS = "contents.tsv"  # extract -> masks: every file of data/coco and its digest
COCO_CONTENTS_HEADER = "path\tsha256_128\n"
# One line per written image: its item, the digest of its bytes and of its semantic mask's. Train and
# evaluate depend on this small file instead of data/coco and data/masks/semantic (see dvc.yaml).
MASKS_MANIFEST = "manifest.tsv"
MASKS_MANIFEST_HEADER = "item\timage_sha256_128\tsemantic_sha256_128\n"  # digests: cocoseg.core.contents
INSTANCE_TABLE = "instances.jsonl"


def mask_name(file_name: str) -> str:
    """The PNG path of an image's masks: its path with the suffix .png, subfolders kept, so 000000139.jpg ->
    000000139.png and JPEGImages/a.jpg -> JPEGImages/a.png."""
    return str(PurePosixPath(file_name).with_suffix(".png"))


def label_dtype(num_classes: int) -> np.dtype:
    """The dtype of a semantic mask (or a prediction) of ``num_classes`` classes, background included:
    uint8 while the class ids 0..K-1 stay below VOID (so COCO's masks keep their bytes), else uint16."""
    if num_classes > VOID_WIDE:
        raise ValueError(f"{num_classes} classes do not fit a uint16 mask with {VOID_WIDE} as void")
    return np.dtype(np.uint8 if num_classes <= VOID else np.uint16)


def void_label(num_classes: int) -> int:
    """The void label of a semantic mask of ``num_classes`` classes: the largest value of its dtype."""
    return int(np.iinfo(label_dtype(num_classes)).max)


def semantic_mask_path(masks_root: Path, item: str) -> Path:
    split, file_name = split_item(item)
    return Path(masks_root) / SEMANTIC / split / mask_name(file_name)


# --- models/, checkpoints/, runs/: the train stage's outputs -----------------------------------------

MODELS_DIR = "models"  # models/<name>/model.pt: the train stage's output, evaluate's and export's input
MODEL_FILE = "model.pt"  # the self-describing checkpoint (models/checkpoint.py)
CHECKPOINTS_DIR = "checkpoints"  # checkpoints/<name>: a run's resumable state until it succeeds
RUNS_DIR = "runs"  # runs/: TensorBoard logs and per-run summaries, outside DVC's outputs


def model_file(model: str, models_root: Path | str = MODELS_DIR) -> Path:
    """models/<model>/model.pt."""
    return Path(models_root) / model / MODEL_FILE


# --- category presets ---------------------------------------------------------------------------------

# The 20 PASCAL VOC classes under their COCO names, in VOC order (as torchvision's segmentation
# reference maps COCO), so results can be set beside published VOC-on-COCO figures.
VOC_CATEGORIES = (
    "airplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "dining table",
    "dog",
    "horse",
    "motorcycle",
    "person",
    "potted plant",
    "sheep",
    "couch",
    "train",
    "tv",
)
