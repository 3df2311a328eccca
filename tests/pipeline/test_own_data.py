"""data.source: local under DVC: a two-split Roboflow-like export outside the repository, `dvc repro` end to
end, then an edited image, an edited annotation and another annotation file each rerun exactly the stages
that depend on them; the export's files keep their bytes, modes and times throughout."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import git_commit, one_model_project, ran, run_in
from local_exports import snapshot, square_jpeg, write_roboflow

pytestmark = pytest.mark.slow

DOWNSTREAM = {"train@fastscnn", "evaluate@fastscnn"}


def changed_stages(repo: Path) -> set[str]:
    """The stages `dvc status` names (those whose own deps, params or outs changed)."""
    return set(re.findall(r"^(\S+):$", run_in(repo, "dvc", "status"), re.MULTILINE))


def set_local_splits(repo: Path, splits: dict[str, dict[str, str]]) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(source="local", splits=sorted(splits))
    params["data"]["local"]["splits"] = splits
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_a_local_export_reruns_exactly_what_a_changed_file_feeds(tmp_path: Path) -> None:
    export = write_roboflow(tmp_path / "export", {"train": 8, "valid": 4})
    repo = tmp_path / "repo"
    one_model_project(repo)
    set_local_splits(
        repo,
        {
            s: {"annotations": str(export / s / "_annotations.coco.json"), "images": str(export / s)}
            for s in ("train", "valid")
        },
    )
    git_commit(repo, "own data")
    original = snapshot(export)

    first = run_in(repo, "dvc", "repro")
    assert ran(first) == {
        "check",
        "download",
        "import@train",
        "import@valid",
        "extract",
        "masks",
        *DOWNSTREAM,
        "compare",
    }
    assert sorted(p.name for p in (repo / "data" / "coco" / "valid").iterdir()) == [
        "valid_0.jpg",
        "valid_1.jpg",
        "valid_2.jpg",
        "valid_3.jpg",
    ]
    assert snapshot(export) == original  # bytes, modes and times, after DVC cached (and chmodded) its copies

    # One image of train changes: its import, extract and masks rerun; valid's import does not.
    (export / "train" / "train_3.jpg").write_bytes(square_jpeg(999))  # in place, as an editor saves
    assert changed_stages(repo) == {"import@train"}
    assert ran(run_in(repo, "dvc", "repro", "masks")) == {"import@train", "extract", "masks"}
    assert changed_stages(repo) == DOWNSTREAM  # through data/masks/manifest.tsv

    # One annotation of valid's JSON changes: valid's import and everything after it rerun, train's not.
    ann = export / "valid" / "_annotations.coco.json"
    data = json.loads(ann.read_text())
    data["annotations"][0]["segmentation"] = [[2, 2, 30, 2, 30, 30, 2, 30]]
    ann.write_text(json.dumps(data))
    assert changed_stages(repo) == {"import@valid", *DOWNSTREAM}
    edited = snapshot(export)
    assert ran(run_in(repo, "dvc", "repro", "masks")) == {"import@valid", "extract", "masks"}
    assert changed_stages(repo) == DOWNSTREAM  # what a full `dvc repro` then reruns (the first one did)
    assert snapshot(export) == edited

    # valid's annotation file becomes another file with the same bytes: only valid's import reruns, and
    # extract, whose input (data/raw) is then unchanged, does not.
    shutil.copy(ann, tmp_path / "valid-v2.json")
    set_local_splits(
        repo,
        {
            "train": {
                "annotations": str(export / "train" / "_annotations.coco.json"),
                "images": str(export / "train"),
            },
            "valid": {"annotations": str(tmp_path / "valid-v2.json"), "images": str(export / "valid")},
        },
    )
    assert changed_stages(repo) == {"check", "import@valid", *DOWNSTREAM}  # check: data.local changed
    assert ran(run_in(repo, "dvc", "repro", "masks")) == {"check", "import@valid"}
    assert snapshot(export) == edited

    # A teammate without the export: clone, pull, and the data stages are up to date (their import
    # stages' deps are missing, and --allow-missing skips a stage with no other change).
    run_in(repo, "dvc", "remote", "add", "-d", "team", str(tmp_path / "remote"))
    git_commit(repo, "ran on own data")
    run_in(repo, "dvc", "push")
    export.rename(tmp_path / "elsewhere")
    clone = tmp_path / "clone"
    run_in(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    run_in(clone, "dvc", "pull")
    output = run_in(clone, "dvc", "repro", "--allow-missing", "masks")
    assert ran(output) == set() and "Data and pipelines are up to date." in output, output
    assert (clone / "data" / "coco" / "train" / "train_3.jpg").read_bytes() == square_jpeg(999)
