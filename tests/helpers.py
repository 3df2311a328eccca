"""What several test modules share: synthetic COCO folders and masks datasets written into tmp_path,
stage-script and DVC runners, and the one-error-line check. Fixtures built on these are in conftest.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from cocoseg.acquire.sample import build_sample
from cocoseg.core.params import SampleConfig

REPO = Path(__file__).resolve().parents[1]

# --- COCO folders -----------------------------------------------------------------------------------

# Non-contiguous ids, as in real COCO; the masks stage maps them to classes 1..3 by id.
CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 7, "name": "car"}]


def jpeg_bytes(height: int, width: int, value: int = 128) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def write_coco(
    root: Path,
    images: list[dict],
    annotations: list[dict],
    categories: list[dict] | None = None,
    split: str = "val2017",
    files: dict[str, bytes | None] | None = None,
) -> Path:
    """Write ``root/annotations/instances_<split>.json`` and one grey JPEG per image of its JSON size.

    ``files`` overrides a file's bytes by name; ``None`` leaves that file out (a missing image).
    """
    files = files or {}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(parents=True, exist_ok=True)
    coco = {
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES if categories is None else categories,
    }
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    for image in images:
        data = files.get(image["file_name"], jpeg_bytes(image["height"], image["width"]))
        if data is not None:
            (root / split / image["file_name"]).write_bytes(data)
    return root


def write_sample(root: Path, seed: int = 42, num_images: int = 64) -> Path:
    """The offline sample (default size) unpacked as the extract stage would leave it."""
    coco, files = build_sample(SampleConfig(num_images=num_images), seed)
    write_coco(
        root,
        coco["images"],
        coco["annotations"],
        coco["categories"],
        files={im["file_name"]: files.get(im["file_name"]) for im in coco["images"]},
    )
    return root


# --- masks-stage outputs, for training and evaluation ----------------------------------------------

CLASSES = ["background", "square", "disk"]


def write_dataset(
    root: Path,
    images: list[np.ndarray],
    masks: list[np.ndarray],
    num_val: int,
    classes: list[str] = CLASSES,
    suffix: str = ".jpg",
) -> tuple[Path, Path]:
    """Lay out what extract and masks leave: data/coco/val2017/<id>.jpg (RGB arrays), data/masks/semantic/
    val2017/<id>.png, split.json (the last ``num_val`` images are val) and labels.json. -> (coco, masks)."""
    coco, masks_root = root / "data" / "coco", root / "data" / "masks"
    (coco / "val2017").mkdir(parents=True, exist_ok=True)
    (masks_root / "semantic" / "val2017").mkdir(parents=True, exist_ok=True)
    items = []
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        name = f"{i + 1:012d}"
        assert cv2.imwrite(str(coco / "val2017" / f"{name}{suffix}"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        assert cv2.imwrite(str(masks_root / "semantic" / "val2017" / f"{name}.png"), mask)
        items.append(f"val2017/{name}{suffix}")
    split = {"train": items[:-num_val], "val": items[-num_val:]}
    (masks_root / "split.json").write_text(json.dumps(split))
    labels = {"classes": [{"id": k, "name": n} for k, n in enumerate(classes)], "void": 255}
    (masks_root / "labels.json").write_text(json.dumps(labels))
    return coco, masks_root


def shapes_pair(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A red square (class 1) and a blue disk (class 2) on grey; a void ring around the disk."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 110, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    s = height // 3
    y, x = int(rng.integers(0, height - s)), int(rng.integers(0, width // 2 - s))
    image[y : y + s, x : x + s], mask[y : y + s, x : x + s] = (220, 30, 30), 1
    centre = (
        int(rng.integers(width // 2 + s // 2, width - s // 2)),  # (x, y) in the right half
        int(rng.integers(s // 2, height - s // 2)),
    )
    cv2.circle(mask, centre, s // 2 + 1, 255, -1)
    cv2.circle(mask, centre, s // 2 - 1, 2, -1)
    cv2.circle(image, centre, s // 2, (30, 30, 220), -1)
    return image, mask


# --- stage scripts and DVC -----------------------------------------------------------------------


def run_stage(stage: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{stage}.py"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def params_file(tmp_path: Path, masks: dict | None = None, **sections: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"masks": {"workers": 1, "preview": 0, **(masks or {})}, **sections}))
    return path


def assert_one_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


def committed_params() -> str:
    """params.yaml as committed: an experiment applied to the workspace must not change the tests."""
    result = subprocess.run(
        ["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return result.stdout if result.returncode == 0 else (REPO / "params.yaml").read_text()


def copy_project(repo: Path) -> None:
    """Copy dvc.yaml, the committed params.yaml, stages/ and src/ (imports use the venv's install)."""
    repo.mkdir(parents=True)
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    (repo / "params.yaml").write_text(committed_params())
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(REPO / "stages", repo / "stages", ignore=ignore)
    shutil.copytree(REPO / "src", repo / "src", ignore=ignore)


def run_in(repo: Path, *args: str, timeout: float = 300, interleaved: bool = False) -> str:
    """Run ``dvc`` (the venv's) or another command in ``repo``; return stdout and stderr together (one after
    the other, or ``interleaved`` in the order they were written: a stage's log under its "Running stage")."""
    venv_bin = str(Path(sys.executable).parent)  # so `python` in stage commands is the venv's too
    # One torch thread per stage: the tiny tensors gain nothing from two, and on a busy 2-core machine an
    # oversubscribed thread pool made a DeepLabV3 step 5-10x slower.
    env = {
        **os.environ,
        "PATH": os.pathsep.join([venv_bin, os.environ.get("PATH", "")]),
        "DVC_NO_ANALYTICS": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "OMP_NUM_THREADS": "1",
    }
    exe = str(Path(venv_bin) / "dvc") if args[0] == "dvc" else args[0]
    result = subprocess.run(
        [exe, *args[1:]],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        stderr=subprocess.STDOUT if interleaved else subprocess.PIPE,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + (result.stderr or "")
    assert result.returncode == 0, output
    return output


GIT = ("-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false")


def git_commit(repo: Path, message: str) -> None:
    run_in(repo, "git", "add", "-A")
    run_in(repo, "git", *GIT, "commit", "-q", "-m", message)


def ran(output: str) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` output says it ran."""
    return set(re.findall(r"Running stage '([^']+)'", output))


def one_model_project(repo: Path, preview: int = 0) -> None:
    """The pipeline shrunken to 16 sample images and one small Fast-SCNN, with the repository's own
    .dvc/config (so cache.type links as shipped), in a new git + DVC repository with one commit
    (dvclive needs one)."""
    copy_project(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["sample"].update(num_images=16, min_size=64, max_size=80)
    params["masks"].update(preview=preview, workers=1)
    params["train"].update(epochs=1, image_size=[64, 64], workers=0, accelerator="cpu", devices=1)
    params["models"] = {"fastscnn": params["models"]["fastscnn"]}
    params["evaluate"].update(speed_batches=1, overlays=1, workers=0)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_in(repo, "git", "init", "-q")
    run_in(repo, "dvc", "init", "-q")
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    run_in(repo, "dvc", "config", "core.check_update", "false")
    git_commit(repo, "shrunken pipeline")
