"""1,203 categories (LVIS's count) end to end: uint16 masks with void 65535 through the masks stage's code, a
training run, evaluate's metrics (with a test split) and predict's mask PNG."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from exports import many_classes

from cocoseg.core.params import EvaluateConfig, MasksConfig, parse_params
from cocoseg.evaluation.evaluate import evaluate_model
from cocoseg.evaluation.predict import predict_images
from cocoseg.masks.build import SplitSource, build_from_sources
from cocoseg.training.train import TrainPaths, train_model

PARAMS = parse_params(
    {
        "train": {
            "epochs": 1,
            "batch_size": 2,
            "image_size": [32, 32],
            "workers": 0,
            "accelerator": "cpu",
            "devices": 1,
        },
        "models": {"x": {"arch": "fastscnn", "lr": 0.01}},
    }
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/coco/<split>/ (links to the export's images) and data/masks of the three images: two train (batch
    norm needs two), the second also validates, the third tests."""
    root = tmp_path_factory.mktemp("lvis")
    export = many_classes(root / "export")
    (root / "data" / "coco").mkdir(parents=True)
    files = export.splits["val"]
    sources = []
    for part, names in (("a", ("0.jpg", "1.jpg")), ("b", ("1.jpg",)), ("c", ("2.jpg",))):
        data = json.loads(files.annotations.read_text())
        keep = {im["id"] for im in data["images"] if im["file_name"] in names}
        data["images"] = [im for im in data["images"] if im["id"] in keep]
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
        (root / "export" / f"{part}.json").write_text(json.dumps(data))
        (root / "data" / "coco" / part).symlink_to(files.images)
        sources.append(SplitSource(part, root / "export" / f"{part}.json", files.images))
    cfg = MasksConfig(workers=1, preview=1, split={"train": ("a",), "val": ("b",), "test": ("c",)})
    build_from_sources(sources, root / "data" / "masks", cfg, seed=0, contents=None)
    return root


def test_masks_train_evaluate_predict_at_1203_classes(project: Path) -> None:
    masks = project / "data" / "masks"
    labels = json.loads((masks / "labels.json").read_text())
    assert labels["void"] == 65535 and len(labels["classes"]) == 1204
    assert json.loads((masks / "split.json").read_text()) == {
        "train": ["a/0.jpg", "a/1.jpg"],
        "val": ["b/1.jpg"],
        "test": ["c/2.jpg"],
    }
    mask = cv2.imread(str(masks / "semantic" / "a" / "0.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint16 and 65535 in mask and mask.max() == 65535

    paths = TrainPaths(
        project / "data" / "coco", masks, project / "models" / "x", project / "live", project / "runs"
    )
    best = train_model(PARAMS, "x", paths)  # void 65535 must be ignored by the loss and the metrics
    assert 0 <= best["val/miou"] <= 1
    ckpt = torch.load(paths.model_dir / "model.pt", weights_only=True)
    assert len(ckpt["classes"]) == 1204 and ckpt["model"]["num_classes"] == 1204

    metrics = evaluate_model(
        paths.model_dir / "model.pt",
        project / "data" / "coco",
        masks,
        project / "eval",
        EvaluateConfig(overlays=1, speed_batches=1, workers=0),
    )
    assert metrics["val_images"] == 1 and metrics["test_images"] == 1
    for prefix in ("", "test/"):
        assert 0 <= metrics[f"{prefix}miou"] <= 1 and 0 <= metrics[f"{prefix}pixel_accuracy"] <= 1
    assert json.loads((project / "eval" / "metrics.json").read_text()) == metrics
    assert (project / "eval" / "overlays" / "1.png").is_file() and (
        project / "eval" / "confusion.png"
    ).is_file()

    written = predict_images(
        paths.model_dir / "model.pt", [project / "export" / "images" / "2.jpg"], project / "predictions"
    )
    pred = cv2.imread(str(written[0]), cv2.IMREAD_UNCHANGED)
    assert pred.dtype == np.uint16 and pred.shape == (160, 160) and pred.max() < 1204
