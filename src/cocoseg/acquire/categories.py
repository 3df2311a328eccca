"""The category names each data source offers, known before any file is downloaded: so a name in
masks.categories or masks.priority can be checked before a stage runs (stages/check.py)."""

from __future__ import annotations

from cocoseg.acquire.sample import CATEGORIES as SAMPLE_CATEGORIES
from cocoseg.core.params import DataConfig

# COCO 2017's 80 instance categories, in id order (instances_val2017.json and instances_train2017.json).
COCO_2017 = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)


def source_categories(data: DataConfig) -> list[dict] | None:
    """The source's categories as COCO records ({id, name}), or None where only its files can tell."""
    if data.source == "sample":
        return [{"id": c["id"], "name": c["name"]} for c in SAMPLE_CATEGORIES]
    if data.source == "coco2017":
        return [{"id": k, "name": name} for k, name in enumerate(COCO_2017, 1)]
    return None
