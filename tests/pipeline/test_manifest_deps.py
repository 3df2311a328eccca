"""train@ and evaluate@ depend on data/masks/manifest.tsv, not on the image and mask folders, and masks
on data/coco/contents.tsv, not on data/coco: a changed image still reruns them all, an image or mask
edited by hand is put back without retraining, and nothing changed reruns nothing.

One shrunken project (one small model, the repository's .dvc/config, so outputs are links into the
cache) is reproduced once; each test starts and ends with it up to date. Files are changed by writing
a new file under the old name, never in place: a linked output shares its bytes with the cache.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
import yaml
from helpers import one_model_project, ran, run_in

pytestmark = pytest.mark.slow

MODEL_STAGES = {"train@fastscnn", "evaluate@fastscnn"}
UP_TO_DATE = "Data and pipelines are up to date."


def manifest(repo: Path) -> dict[str, tuple[str, str]]:
    """data/masks/manifest.tsv as {item: (image hash, semantic mask hash)}."""
    _, *lines = (repo / "data" / "masks" / "manifest.tsv").read_text().splitlines()
    return {item: (image, mask) for item, image, mask in (line.split("\t") for line in lines)}


def replace_file(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("manifest") / "repo"
    one_model_project(repo)
    assert MODEL_STAGES < ran(run_in(repo, "dvc", "repro"))
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    deps = {d["path"] for d in lock["train@fastscnn"]["deps"]}
    assert "data/masks/manifest.tsv" in deps and not deps & {"data/coco", "data/masks/semantic"}
    return repo


def test_nothing_changed_reruns_nothing(project: Path) -> None:
    assert UP_TO_DATE in run_in(project, "dvc", "status")
    output = run_in(project, "dvc", "repro")
    assert ran(output) == set(), output
    assert "Stage 'train@fastscnn' didn't change, skipping" in output


def changed_jpeg(data: bytes) -> bytes:
    """One byte changed: the JFIF header's horizontal density; the pixels, and so the masks, stay."""
    edited = bytearray(data)
    assert edited[6:11] == b"JFIF\0"
    edited[15] ^= 1
    return bytes(edited)


def test_a_changed_image_reruns_extract_masks_train_and_evaluate(project: Path) -> None:
    """A new version of an image arrives the way data does: in the archive that download delivers."""
    assert UP_TO_DATE in run_in(project, "dvc", "status")
    before = manifest(project)
    item = sorted(before)[0]
    archive = project / "data" / "raw" / "download" / f"{item.split('/')[0]}.zip"
    with zipfile.ZipFile(archive) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    archive.unlink()  # a linked output: write a new file, never into the cache's bytes
    with zipfile.ZipFile(archive, "w") as zf:
        for info, data in members:
            zf.writestr(info, changed_jpeg(data) if info.filename == item else data)
    run_in(project, "dvc", "commit", "-f", "download")  # the edited archive as download's new output
    status = run_in(project, "dvc", "status")
    assert "extract:" in status and "masks:" not in status  # masks follows data/coco/contents.tsv

    output = run_in(project, "dvc", "repro")
    assert {"extract", "masks", *MODEL_STAGES} <= ran(output) and "download" not in ran(output), output
    after = manifest(project)
    assert after[item][0] != before[item][0] and after[item][1] == before[item][1]  # same pixels' masks
    assert {k: v for k, v in after.items() if k != item} == {k: v for k, v in before.items() if k != item}
    assert UP_TO_DATE in run_in(project, "dvc", "status")


def test_an_image_edited_in_data_coco_is_put_back_by_extract(project: Path) -> None:
    """data/coco is extract's output: a hand edit there shows as such and is undone, not trained on."""
    assert UP_TO_DATE in run_in(project, "dvc", "status")
    item = sorted(manifest(project))[0]
    path = project / "data" / "coco" / item
    original = path.read_bytes()
    replace_file(path, changed_jpeg(original))

    status = run_in(project, "dvc", "status")
    assert re.search(r"extract:\s+changed outs:\s+modified:\s+data/coco\s", status), status
    assert "masks:" not in status and "train@fastscnn" not in status
    output = run_in(project, "dvc", "repro")
    assert ran(output) <= {"extract"}, output  # rerun, or restored from the run-cache
    assert path.read_bytes() == original
    assert UP_TO_DATE in run_in(project, "dvc", "status")


def test_an_edited_mask_is_put_back_without_retraining(project: Path) -> None:
    assert UP_TO_DATE in run_in(project, "dvc", "status")
    first, second = [
        project / "data" / "masks" / "semantic" / item.replace(".jpg", ".png")
        for item in sorted(manifest(project))[:2]
    ]
    original, other = first.read_bytes(), second.read_bytes()
    assert other != original
    replace_file(first, other)  # another image's mask: a valid PNG, the wrong one

    status = run_in(project, "dvc", "status")
    assert re.search(r"masks:\s+changed outs:\s+modified:\s+data/masks/semantic\s", status), status
    assert "train@fastscnn" not in status  # its dep is the manifest, which still holds the original's hash

    output = run_in(project, "dvc", "repro")
    # masks reruns, or, with its deps and params unchanged, is restored from the run-cache; either way
    # the mask is the one in the manifest again, so train and evaluate, whose inputs are then exactly
    # those they were run on, need not and do not rerun.
    assert "Running stage 'masks'" in output or "Stage 'masks' is cached" in output, output
    assert ran(output) <= {"masks"}, output
    assert first.read_bytes() == original
    assert UP_TO_DATE in run_in(project, "dvc", "status")
