"""SegmentationDataset and DataModule on a tiny masks folder written into tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import CLASSES, shapes_pair, write_dataset

from cocoseg.core.splits import load_split
from cocoseg.evaluation.evaluate import ValImages
from cocoseg.models.preprocessing import Preprocessing
from cocoseg.training.data import (
    SegmentationDataModule,
    SegmentationDataset,
    resolve_workers,
    train_transform,
    usable_cores,
)
from cocoseg.training.decoded import DecodedPairs


@pytest.fixture
def shapes(tmp_path: Path) -> tuple[Path, Path, list[np.ndarray]]:
    pairs = [shapes_pair(48, 64, seed) for seed in range(4)]
    coco, masks = write_dataset(tmp_path, [p[0] for p in pairs], [p[1] for p in pairs], num_val=1)
    return coco, masks, [p[1] for p in pairs]


def test_resized_item_shapes_and_labels(shapes: tuple[Path, Path, list[np.ndarray]]) -> None:
    coco, masks, sources = shapes
    dm = SegmentationDataModule(coco, masks, (32, 40), batch_size=2)
    assert dm.classes == CLASSES and dm.num_classes == 3
    ds = dm.dataset("train")
    assert len(ds) == 3
    image, target = ds[0]
    # uint8 as decoded: the workers neither convert nor normalise (the module does, on the device)
    assert image.shape == (32, 40, 3) and image.dtype == torch.uint8
    assert target.shape == (32, 40) and target.dtype == torch.uint8
    # nearest: no blended labels; void survives as 255, not averaged into a class
    assert set(target.unique().tolist()) <= set(np.unique(sources[0]).tolist())
    assert {1, 2, 255} <= set(target.unique().tolist())
    # and it is the nearest-neighbour resize exactly
    expected = cv2.resize(sources[0], (40, 32), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(target.numpy(), expected)
    # the image is RGB: the red square's pixels are red, not blue (BGR read converted)
    rgb = image.numpy()
    square = target.numpy() == 1
    assert rgb[square, 0].mean() > 180 and rgb[square, 2].mean() < 70


def test_evaluation_images_keep_full_res_target(shapes: tuple[Path, Path, list[np.ndarray]]) -> None:
    coco, masks, sources = shapes
    dataset = ValImages(load_split(masks)["val"], coco, masks, Preprocessing((32, 40)))
    image, target = dataset[0]
    assert image.shape == (3, 32, 40) and image.dtype == torch.uint8  # the model's input size ...
    np.testing.assert_array_equal(target.numpy(), sources[3])  # ... the mask as stored, at 48x64


def test_loaders(shapes: tuple[Path, Path, list[np.ndarray]]) -> None:
    coco, masks, _ = shapes
    dm = SegmentationDataModule(coco, masks, (32, 32), batch_size=2, workers=0, scale=(0.75, 1.25))
    train = list(dm.train_dataloader())
    assert len(train) == 1  # 3 images, batch 2: the last single image is dropped (BatchNorm needs > 1)
    images, target = train[0]
    assert images.shape == (2, 32, 32, 3) and target.shape == (2, 32, 32)
    assert images.dtype == target.dtype == torch.uint8  # uint8 until the device
    val = list(dm.val_dataloader())
    assert [b[0].shape[0] for b in val] == [1]  # val keeps every image


def test_train_batches_do_not_depend_on_the_workers(shapes: tuple[Path, Path, list[np.ndarray]]) -> None:
    """Each item's shuffle position and augmentation come from (seed, epoch, index): 0, 1 or 2 workers,
    and an epoch started afresh (as on resume), give the same batches; another epoch gives others."""
    coco, masks, _ = shapes

    def epoch_batches(workers: int, epoch: int, seed: int = 7) -> list[np.ndarray]:
        loader = SegmentationDataModule(
            coco, masks, (32, 32), batch_size=1, workers=workers, scale=(0.5, 1.5), seed=seed
        ).train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [np.concatenate([image.numpy().ravel(), mask.numpy().ravel()]) for image, mask in loader]

    first = epoch_batches(0, epoch=1)
    for other in (epoch_batches(1, epoch=1), epoch_batches(2, epoch=1)):
        assert len(other) == len(first) == 3
        for a, b in zip(first, other, strict=False):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, epoch_batches(0, epoch=2), strict=False))
    assert any(
        not np.array_equal(a, b) for a, b in zip(first, epoch_batches(0, epoch=1, seed=8), strict=False)
    )


def blocks(height: int, width: int, seed: int) -> np.ndarray:
    """Random 0/1 labels on 8x8 blocks with a void block; the image is the label in white on black."""
    rng = np.random.default_rng(seed)
    mask = np.kron(rng.integers(0, 2, (height // 8, width // 8)), np.ones((8, 8), int)).astype(np.uint8)
    mask[8:16, 8:16] = 255
    return mask


def decode(image: np.ndarray) -> np.ndarray:
    return (image.mean(axis=2) > 127).astype(np.uint8)


def test_train_transform_keeps_labels_aligned(tmp_path: Path) -> None:
    """Scale x2 (an exact upsampling, so bilinear and nearest agree pixel for pixel), random crop, flip."""
    masks = [blocks(32, 48, seed) for seed in range(2)]
    images = [np.repeat((m == 1)[..., None] * 255, 3, axis=2).astype(np.uint8) for m in masks]
    coco, masks_root = write_dataset(tmp_path, images, masks, num_val=1)
    ds = SegmentationDataset(
        ["val2017/000000000001.jpg"],
        coco,
        masks_root,
        (32, 48),
        transform=train_transform((32, 48), (2.0, 2.0), hflip=True),
    )
    up = np.kron(masks[0], np.ones((2, 2), np.uint8))  # the 64x96 mask the crops come from
    flips, offsets = 0, set()
    for epoch in range(12):  # a fresh draw per epoch
        image, target = ds[(epoch, 0)]
        target = target.numpy()
        keep = target != 255
        np.testing.assert_array_equal(decode(image.numpy())[keep], target[keep])
        # the crop really is a window of the x2 mask, flipped or not: find where it came from
        found = [
            (y, x, f)
            for y in range(33)
            for x in range(49)
            for f in (0, 1)
            if np.array_equal(
                up[y : y + 32, x : x + 48][:, ::-1] if f else up[y : y + 32, x : x + 48], target
            )
        ]
        assert found, "the target is not a crop of the rescaled mask"
        flips += found[0][2]
        offsets.add(found[0][:2])
    assert 0 < flips < 12 and len(offsets) > 1  # both flipped and unflipped, several crop positions


def test_train_transform_pads_with_void(tmp_path: Path) -> None:
    mask = blocks(32, 48, 0)
    image = np.repeat((mask == 1)[..., None] * 255, 3, axis=2).astype(np.uint8)
    transform = train_transform((32, 48), (0.5, 0.5), hflip=False)
    out_image, out_mask = transform((image, mask), np.random.default_rng(0))
    assert out_image.shape == (32, 48, 3) and out_mask.shape == (32, 48)
    # shrunk to 16x24 at the top left, the rest padded: void in the mask, black in the image
    shrunk = cv2.resize(mask, (24, 16), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(out_mask[:16, :24], shrunk)
    assert (out_mask[16:] == 255).all() and (out_mask[:, 24:] == 255).all()
    assert (out_image[16:] == 0).all() and (out_image[:, 24:] == 0).all()


class ThreadsSeen(SegmentationDataset):
    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, _ = super().__getitem__(index)
        return image, torch.tensor(cv2.getNumThreads())


def test_workers_run_opencv_on_one_thread(shapes: tuple[Path, Path, list[np.ndarray]]) -> None:
    coco, masks, _ = shapes
    dm = SegmentationDataModule(coco, masks, (32, 32), batch_size=3, workers=1)
    loader = dm._loader(ThreadsSeen(load_split(masks)["train"], coco, masks, (32, 32)), None, drop_last=False)
    assert next(iter(loader))[1].tolist() == [1, 1, 1]


# Workers forked right after the parent used OpenCV's thread pool: setting OpenCV's threads inside such a
# worker hung it most times (pthread_cond_destroy waits for pool threads the fork did not copy).
FORK_AFTER_OPENCV = """
import sys
import cv2, numpy as np
from cocoseg.training.data import SegmentationDataModule
image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
for trial in range(6):
    cv2.setNumThreads(2)
    cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (96, 64))  # the pool's threads at work
    dm = SegmentationDataModule(sys.argv[1], sys.argv[2], (32, 32), batch_size=2, workers=1)
    next(iter(dm.train_dataloader()))
print("done")
"""


def test_workers_forked_after_opencv_threads_ran_do_not_hang(
    shapes: tuple[Path, Path, list[np.ndarray]],
) -> None:
    coco, masks, _ = shapes
    result = subprocess.run(
        [sys.executable, "-c", FORK_AFTER_OPENCV, str(coco), str(masks)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr


def test_auto_workers_follow_the_usable_cores(shapes: tuple[Path, Path, list[np.ndarray]]) -> None:
    coco, masks, _ = shapes
    assert resolve_workers("auto") == usable_cores() == len(os.sched_getaffinity(0))
    assert resolve_workers(1) == 1
    assert (
        resolve_workers(usable_cores() + 62) == usable_cores()
    )  # capped, with a line (tests/core/test_limits.py)
    assert (
        SegmentationDataModule(coco, masks, (32, 32), batch_size=2, workers="auto").workers == usable_cores()
    )


def test_uint16_masks_pad_with_their_own_void(tmp_path: Path) -> None:
    mask = (blocks(32, 48, 0) == 1).astype(np.uint16) * 700  # class ids beyond uint8
    image = np.zeros((32, 48, 3), np.uint8)
    _, out_mask = train_transform((32, 48), (0.5, 0.5), False, void=65535)(
        (image, mask), np.random.default_rng(0)
    )
    assert out_mask.dtype == np.uint16
    assert set(np.unique(out_mask[:16, :24]).tolist()) <= {0, 700} and (out_mask[16:] == 65535).all()


def test_a_datamodule_takes_its_void_from_labels_json(tmp_path: Path) -> None:
    pairs = [shapes_pair(48, 64, seed) for seed in range(3)]
    wide = [np.where(p[1] == 255, 65535, p[1].astype(np.uint16) * 300).astype(np.uint16) for p in pairs]
    coco, masks = write_dataset(
        tmp_path, [p[0] for p in pairs], wide, num_val=1, classes=[f"c{k}" for k in range(601)]
    )
    labels = json.loads((masks / "labels.json").read_text())
    (masks / "labels.json").write_text(json.dumps({**labels, "void": 65535}))
    dm = SegmentationDataModule(coco, masks, (24, 32), batch_size=2, scale=(0.5, 0.5))
    assert dm.void == 65535 and dm.num_classes == 601
    _, targets = next(iter(dm.train_dataloader()))
    assert targets.dtype == torch.uint16 and {0, 300, 600, 65535} >= set(targets.unique().tolist()) >= {65535}


def test_a_large_photo_is_decoded_reduced_and_trains_like_its_full_decode(tmp_path: Path) -> None:
    """Over a megapixel, a JPEG is decoded at the smallest 1/2, 1/4, 1/8 scale that keeps the pixels the
    transform needs, its mask resized to match (nearest)."""
    image, mask = shapes_pair(960, 1280, 3)
    coco, masks = write_dataset(tmp_path, [image, image], [mask, mask], num_val=1)
    ds = SegmentationDataset(["val2017/000000000001.jpg"], coco, masks, (96, 128), at_least=(120, 160))
    reduced, target = ds[0]
    whole = SegmentationDataset(["val2017/000000000001.jpg"], coco, masks, (96, 128), at_least=(960, 1280))[
        0
    ][0]
    path = coco / "val2017" / "000000000001.jpg"
    eighth = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_8), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(
        reduced.numpy(), cv2.resize(eighth, (128, 96), interpolation=cv2.INTER_LINEAR)
    )
    small_mask = cv2.resize(mask, (160, 120), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(
        target.numpy(), cv2.resize(small_mask, (128, 96), interpolation=cv2.INTER_NEAREST)
    )
    assert np.abs(reduced.numpy().astype(int) - whole.numpy().astype(int)).mean() < 4  # the same picture


def test_a_large_pair_is_decoded_once_and_read_back_identical(tmp_path: Path) -> None:
    image, mask = shapes_pair(960, 1280, 4)
    coco, masks = write_dataset(tmp_path, [image, image], [mask, mask], num_val=1)
    item = "val2017/000000000001.jpg"
    (masks / "manifest.tsv").write_text(
        f"item\timage_sha256_128\tsemantic_sha256_128\n{item}\t{'a' * 32}\t{'b' * 32}\n"
    )
    decoded = DecodedPairs.beside(masks, (240, 320))
    first = SegmentationDataset([item], coco, masks, (200, 300), at_least=(240, 320), decoded=decoded)[0]
    entry = tmp_path / "data" / ".decoded" / f"{'a' * 32}{'b' * 32}-240x320.npy"
    assert entry.is_file()
    kept_image, kept_mask = decoded.load(item)
    assert kept_image.shape == (240, 320, 3) and kept_mask.shape == (240, 320)
    (coco / "val2017" / "000000000001.jpg").unlink()  # the second read must not need the files
    second = SegmentationDataset([item], coco, masks, (200, 300), at_least=(240, 320), decoded=decoded)[0]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    other = DecodedPairs(decoded.root, {item: "c" * 64}, (240, 320))  # an edited image: another digest
    assert other.load(item) is None
    assert DecodedPairs.beside(tmp_path / "nowhere", (240, 320)) is None  # no manifest: nothing kept


def test_photos_up_to_a_megapixel_decode_whole_as_before(shapes: tuple[Path, Path, list[np.ndarray]]) -> None:
    coco, masks, _ = shapes
    ds = SegmentationDataset(load_split(masks)["train"], coco, masks, (24, 32), at_least=(6, 8))
    image = cv2.cvtColor(cv2.imread(str(coco / "val2017" / "000000000001.jpg")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(
        ds[0][0].numpy(), cv2.resize(image, (32, 24), interpolation=cv2.INTER_LINEAR)
    )


def test_workers_start_even_after_this_process_ran_opencv_on_its_thread_pool(
    shapes: tuple[Path, Path, list[np.ndarray]],
) -> None:
    """OpenCV's pool started here (a large resize on several threads), then loader workers fork: each must
    get its batch (a worker setting its own thread count used to wait for ever on the pool)."""
    coco, masks, _ = shapes
    cv2.setNumThreads(2)
    big = np.zeros((960, 1280, 3), np.uint8)
    for _ in range(3):
        cv2.resize(big, (2560, 1920), interpolation=cv2.INTER_CUBIC)
    dm = SegmentationDataModule(coco, masks, (32, 32), batch_size=3, workers=1, scale=(1.0, 1.0))
    images, _ = next(iter(dm.train_dataloader()))
    assert images.shape == (3, 32, 32, 3) and cv2.getNumThreads() == 1
