"""Every export style of tests/exports.py through `dvc repro` end to end (data.source: local, one tiny
Fast-SCNN, one epoch), each mask in data/masks checked pixel by pixel against pycocotools, the export's
folder unchanged. (``cocoseg prepare --ann`` on every style: tests/masks/test_exports.py.)

params.yaml points at the export's own files, as a user would write it:

- exports with usually named splits (Roboflow's train/valid/test, train/val) are left to ``masks.split:
  auto``; Roboflow's test split is scored by evaluate apart from val (``test/*`` in metrics.json);
- one-file exports of 3 images are pooled (auto: a seeded share validates);
- one-file exports under unusual names (CVAT's ``default``, ``phone``) and those of 2 images (too few to
  pool: Fast-SCNN's batch norm needs two training images) name their parts in a ``masks.split`` mapping,
  the same file registered twice, once to train and once to validate.

One `dvc init`ed project is copied per style; previews and overlays are off to keep each run short.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from exports import STYLES, check_split_masks
from helpers import git_commit, one_model_project, ran, run_in
from local_exports import snapshot

pytestmark = pytest.mark.slow

# Styles whose split names masks.split: auto recognises -> the source splits of each part of split.json
BY_NAME = {
    "roboflow": {"train": ["train"], "val": ["valid"], "test": ["test"]},
    "web_pngs": {"train": ["train"], "val": ["val"]},
}
# One-file styles under an unusual name or of 2 images: the file as <split> to train and <split>_val to
# validate, in a masks.split mapping. The other one-file styles are pooled by auto.
TWICE = {"cvat", "attributes", "exif_photo"}
MODEL_STAGES = {"train@fastscnn", "evaluate@fastscnn", "compare"}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shrunken one-model project, `dvc init`ed once for every style."""
    repo = tmp_path_factory.mktemp("template") / "repo"
    one_model_project(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"].update(overlays=0)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git_commit(repo, "no overlays")
    return repo


def point_at(repo: Path, local: dict[str, dict[str, str]], split: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(source="local", splits=list(local))
    params["data"]["local"]["splits"] = local
    params["masks"]["split"] = split
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_export_style_through_dvc_repro(style: str, template: Path, tmp_path: Path) -> None:
    export = STYLES[style](tmp_path / "export")
    repo = tmp_path / "repo"
    shutil.copytree(template, repo, symlinks=True)
    files = {
        name: {"annotations": str(f.annotations), "images": str(f.images)}
        for name, f in export.splits.items()
    }
    parts: dict[str, list[str]]  # the source splits of each part of split.json
    if style in TWICE:
        ((name, entry),) = files.items()
        files[f"{name}_val"] = entry
        parts = {"train": [name], "val": [f"{name}_val"]}
        point_at(repo, files, parts)
    else:  # auto: by the split names, else pooled (a seeded share of the one split validates)
        parts = BY_NAME.get(style, {"train": list(files), "val": list(files)})
        point_at(repo, files, "auto")
    git_commit(repo, f"own data: {style}")
    original = snapshot(export.root)

    output = run_in(repo, "dvc", "repro", timeout=600)
    imports = {f"import@{name}" for name in files}
    assert ran(output) == {"check", "download", *imports, "extract", "masks", *MODEL_STAGES}, output
    assert snapshot(export.root) == original  # the user's folder: bytes, modes and times unchanged

    masks = repo / "data" / "masks"
    report = json.loads((masks / "report.json").read_text())
    checked = sum(
        check_split_masks(
            export.splits[name.removesuffix("_val")], masks / "semantic" / name, masks / "labels.json"
        )
        for name in files
    )
    assert checked == report["counts"]["images_written"] > 0

    split = json.loads((masks / "split.json").read_text())
    sources = {part: sorted({item.split("/")[0] for item in items}) for part, items in split.items()}
    assert sources == parts
    metrics = json.loads((repo / "results" / "evaluate" / "fastscnn" / "metrics.json").read_text())
    assert metrics["val_images"] == len(split["val"]) > 0 and 0 <= metrics["miou"] <= 1
    if "test" in parts:  # Roboflow's test split: scored apart from val
        assert metrics["test_images"] == len(split["test"]) == 3 and 0 <= metrics["test/miou"] <= 1
    labels = json.loads((masks / "labels.json").read_text())
    if style == "exif_photo":  # the turned photo, once per registration of its file
        assert report["counts"]["images_turned_upright"] == 2
    if style == "many_classes":
        assert labels["void"] == 65535 and len(labels["classes"]) == 1204
    assert json.loads((repo / "results" / "miou.json").read_text())["miou"]["fastscnn"] == pytest.approx(
        metrics["miou"], abs=1e-6
    )
