"""The import stage: a split of the user's files into data/raw/local/<split>, the originals only read."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from helpers import assert_one_error, run_stage
from local_exports import snapshot, write_roboflow, write_split

from cocoseg.acquire.export import ExportError
from cocoseg.acquire.local import import_split


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_a_split_is_copied_into_the_coco_layout_and_the_originals_stay_as_they_were(tmp_path: Path) -> None:
    export = write_roboflow(tmp_path / "export", {"train": 3})
    (export / "train" / "unlisted.jpg").write_bytes(b"not in the JSON")
    before = snapshot(export)
    out = tmp_path / "data" / "raw" / "local" / "train"
    assert import_split("train", export / "train" / "_annotations.coco.json", export / "train", out) == 3
    assert files_under(out) == [
        "annotations/instances_train.json",
        "train/train_0.jpg",
        "train/train_1.jpg",
        "train/train_2.jpg",
    ]
    assert (out / "annotations" / "instances_train.json").read_bytes() == (
        export / "train" / "_annotations.coco.json"
    ).read_bytes()
    for name in files_under(out):
        copy = out / name
        original = (
            export
            / "train"
            / (name.split("/", 1)[1] if name.startswith("train/") else "_annotations.coco.json")
        )
        assert copy.read_bytes() == original.read_bytes()
        assert copy.stat().st_ino != original.stat().st_ino  # a copy: writable originals are never linked
        os.chmod(copy, 0o444)  # what DVC does to the files it caches
    assert snapshot(export) == before  # bytes, modes and times, folders included


def test_read_only_originals_are_linked_and_keep_their_mode(tmp_path: Path) -> None:
    """An export tracked with `dvc add` is made of read-only links into the cache: linking costs nothing."""
    export = write_roboflow(tmp_path / "export", {"train": 2})
    for path in (export / "train").iterdir():
        os.chmod(path, 0o444)
    before = snapshot(export)
    out = tmp_path / "out"
    import_split("train", export / "train" / "_annotations.coco.json", export / "train", out)
    assert (out / "train" / "train_0.jpg").stat().st_ino == (export / "train" / "train_0.jpg").stat().st_ino
    os.chmod(out / "train" / "train_0.jpg", 0o444)  # DVC's chmod changes nothing
    assert snapshot(export) == before


def test_subfolders_are_kept_missing_images_left_out_and_unsafe_names_never_read(
    tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.INFO)
    images = tmp_path / "export" / "images"
    ann = tmp_path / "export" / "annotations" / "instances_default.json"
    write_split(ann, images, ["JPEGImages/a.jpg", "b.jpg", "c.jpg"])
    (images / "c.jpg").unlink()
    (tmp_path / "export" / "secret.jpg").write_bytes(b"outside the images folder")
    data = json.loads(ann.read_text())
    data["images"].append({"id": 9, "file_name": "../secret.jpg", "width": 32, "height": 32})
    ann.write_text(json.dumps(data))
    out = tmp_path / "out"
    assert import_split("default", ann, images, out) == 2
    assert files_under(out) == [
        "annotations/instances_default.json",
        "default/JPEGImages/a.jpg",
        "default/b.jpg",
    ]
    assert "default: 1 of the 3 images instances_default.json lists are not in" in caplog.text
    assert "1 image records without a usable file name" in caplog.text


def test_an_images_folder_holding_none_of_the_images_is_refused(tmp_path: Path) -> None:
    export = write_roboflow(tmp_path / "export", {"train": 2, "valid": 1})
    out = tmp_path / "out"
    with pytest.raises(
        ExportError,
        match=rf"^{export / 'valid'}: none of the 2 images .*_annotations.coco.json "
        r"lists is there \(the first: 'train_0.jpg'\); is this the split's "
        r"images folder\?",
    ):
        import_split("train", export / "train" / "_annotations.coco.json", export / "valid", out)
    assert not out.exists()


def test_the_stage_reads_its_paths_from_params_and_fails_in_one_line(tmp_path: Path) -> None:
    export = write_roboflow(tmp_path / "export", {"train": 1})
    params = tmp_path / "params.yaml"
    params.write_text(
        json.dumps(
            {
                "data": {
                    "local": {
                        "splits": {
                            "train": {
                                "annotations": "export/train/_annotations.coco.json",
                                "images": "export/train",
                            }
                        }
                    }
                }
            }
        )
    )
    result = run_stage("import", "--split", "train", "--out", "data/raw/local/train", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path / "data" / "raw" / "local" / "train") == [
        "annotations/instances_train.json",
        "train/train_0.jpg",
    ]
    result = run_stage("import", "--split", "valid", "--out", "x", cwd=tmp_path)
    assert_one_error(result, "params.yaml: data.local.splits has no split 'valid'; it has ['train']")
    (export / "train" / "_annotations.coco.json").write_text("{oops")
    result = run_stage("import", "--split", "train", "--out", "data/raw/local/train", cwd=tmp_path)
    assert_one_error(result, "export/train/_annotations.coco.json: not a readable JSON file (JSONDecodeError")
    assert files_under(tmp_path / "data" / "raw" / "local" / "train")  # the previous import is intact


def test_extract_links_the_imported_splits_into_data_coco(tmp_path: Path) -> None:
    from cocoseg.acquire.extract import ExtractError, extract_coco, write_manifest
    from cocoseg.core.contents import digest_bytes

    export = write_roboflow(tmp_path / "export", {"train": 2, "valid": 1})
    raw = tmp_path / "data" / "raw"
    for split in ("train", "valid"):
        import_split(split, export / split / "_annotations.coco.json", export / split, raw / "local" / split)
    write_manifest(raw / "download", "local", [], [])
    coco = tmp_path / "data" / "coco"
    assert extract_coco(raw / "download", coco, ("train", "valid"), raw / "local") == {"train": 3, "valid": 2}
    assert files_under(coco) == [
        "annotations/instances_train.json",
        "annotations/instances_valid.json",
        "contents.tsv",
        "train/train_0.jpg",
        "train/train_1.jpg",
        "valid/valid_0.jpg",
    ]
    image = coco / "valid" / "valid_0.jpg"
    assert image.stat().st_ino == (raw / "local" / "valid" / "valid" / "valid_0.jpg").stat().st_ino
    assert f"valid/valid_0.jpg\t{digest_bytes(image.read_bytes())}" in (coco / "contents.tsv").read_text()
    with pytest.raises(
        ExtractError, match=r"local/test: split 'test' was not imported; data.local.splits needs"
    ):
        extract_coco(raw / "download", coco, ("train", "test"), raw / "local")
    assert files_under(coco)[0] == "annotations/instances_train.json"  # the previous data/coco is kept
