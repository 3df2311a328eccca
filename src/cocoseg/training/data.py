"""Images and masks from the masks stage, as a Lightning DataModule.

The DataModule owns every file access: it reads ``split.json`` and ``labels.json`` written by the
masks stage, the images under ``data/coco/<split>/`` and the semantic masks under
``data/masks/semantic/<split>/``. Transforms are numpy/OpenCV on (image, mask) pairs: bilinear for
images, nearest for masks, so labels are never blended and void (255, or 65535 in the uint16 masks of
more than 254 classes: labels.json says which) stays void.

Each image is read after its mask, whose shape it is read to (``cocoseg.core.images.read_image``): an
EXIF-rotated photo that the masks stage painted upright is turned the same way, and a photo of more
than a megapixel is decoded at 1/2, 1/4 or 1/8 scale when that still gives the pixels the transform
needs; its mask is then resized to match (nearest), and the pair is kept for later epochs (decoded.py).
Photos of up to a megapixel (every COCO image, the sample) are read whole, as before.

The workers do as little as they can: decode, resize, crop and flip, and hand over uint8 as decoded,
(H, W, 3) images and (H, W) masks: a quarter of float32's bytes (an eighth of int64's for masks) to
collate, share between processes and pin. The LightningModule turns them into normalised float on the
device (``SegmentationModule.prepare_batch``). Each worker runs OpenCV on one thread: the workers are
the parallelism, and OpenCV's default of one thread per core in every worker oversubscribes the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cocoseg.core.images import read_mask, read_rgb, reduction
from cocoseg.core.layout import VOID, image_path, semantic_mask_path
from cocoseg.core.limits import cap_processes
from cocoseg.core.machine import usable_cores
from cocoseg.core.splits import load_labels, load_split, load_void
from cocoseg.training.decoded import DecodedPairs

__all__ = ["SegmentationDataModule", "SegmentationDataset", "resolve_workers", "train_transform"]

Pair = tuple[np.ndarray, np.ndarray]  # (H, W, 3) uint8 RGB image, (H, W) uint8 (or uint16) mask


def resolve_workers(workers: int | str) -> int:
    """``train.workers``: an integer (at most one per usable core, with a line when capped), or "auto" =
    one worker per usable core."""
    return usable_cores() if workers == "auto" else cap_processes("train.workers", int(workers))


def resize_pair(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> Pair:
    h, w = size
    return (
        cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR),
        cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST),
    )


def train_transform(
    size: tuple[int, int], scale: tuple[float, float], hflip: bool, void: int = VOID
) -> Callable[[Pair, np.random.Generator], Pair]:
    """Random rescale of the target size, then a random crop (padded with ``void``) back to ``size``."""
    h, w = size

    def apply(pair: Pair, rng: np.random.Generator) -> Pair:
        s = rng.uniform(*scale)
        image, mask = resize_pair(*pair, (max(1, round(h * s)), max(1, round(w * s))))
        pad_h, pad_w = max(h - image.shape[0], 0), max(w - image.shape[1], 0)
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            mask = cv2.copyMakeBorder(mask, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=void)
        y = int(rng.integers(0, image.shape[0] - h + 1))
        x = int(rng.integers(0, image.shape[1] - w + 1))
        image, mask = image[y : y + h, x : x + w], mask[y : y + h, x : x + w]
        if hflip and rng.random() < 0.5:
            image, mask = cv2.flip(image, 1), cv2.flip(mask, 1)  # copies with positive strides, for torch
        return image, mask

    return apply


class EpochShuffle(Sampler[tuple[int, int]]):
    """A seeded shuffle of the train items for each epoch, every index tagged with its epoch.

    With the dataset drawing each item's augmentation from (seed, epoch, index), a run does not depend
    on which worker loads an item, on how many workers there are, or on whether it was resumed.
    """

    def __init__(self, size: int, seed: int, epoch: int = 0) -> None:
        self.size, self.seed, self.epoch = size, seed, epoch

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it at the start of every epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Any:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        return iter([(self.epoch, int(i)) for i in order])


class SegmentationDataset(Dataset):
    """Items are "<split>/<file_name>" entries of split.json; pairs are resized (or augmented) to ``size``.

    With a ``transform``, keys are ``(epoch, index)`` (see ``EpochShuffle``) and the augmentation of an
    item is drawn from an RNG seeded by ``(seed, epoch, index)``; without one, keys are plain indices.
    ``at_least``: the (height, width) the transform resizes to at most (default ``size``); large photos
    are decoded at a reduced scale that keeps that many pixels, and kept in ``decoded`` when given.
    """

    def __init__(
        self,
        items: list[str],
        coco_root: Path,
        masks_root: Path,
        size: tuple[int, int],
        transform: Callable[[Pair, np.random.Generator], Pair] | None = None,
        seed: int = 0,
        at_least: tuple[int, int] | None = None,
        decoded: DecodedPairs | None = None,
    ) -> None:
        self.items, self.coco_root, self.masks_root = items, Path(coco_root), Path(masks_root)
        self.size, self.transform, self.seed = size, transform, seed
        self.at_least, self.decoded = tuple(at_least or size), decoded
        self.whole: set[int] = set()  # items found to be read whole: no cache to look in

    def __len__(self) -> int:
        return len(self.items)

    def paths(self, index: int) -> tuple[Path, Path]:
        item = self.items[index]
        return image_path(self.coco_root, item), semantic_mask_path(self.masks_root, item)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, W, 3) uint8 RGB image, (H, W) uint8 (or uint16) mask, both at ``size``."""
        epoch, index = key if isinstance(key, tuple) else (0, key)
        image, mask = self.read_pair(index)
        if self.transform is not None:
            rng = np.random.default_rng([self.seed, epoch, index])
            image, mask = self.transform((image, mask), rng)
        else:
            image, mask = resize_pair(image, mask, self.size)
        return torch.from_numpy(image), torch.from_numpy(mask)

    def read_pair(self, index: int) -> Pair:
        """The item's (RGB image, mask): the mask first, the image read to its shape; a large photo reduced,
        its mask resized to match, and both kept (or taken from ``decoded``)."""
        kept = self.decoded.load(self.items[index]) if self.decoded and index not in self.whole else None
        if kept is not None:
            return kept
        image_path, mask_path = self.paths(index)
        mask = read_mask(mask_path)
        if reduction(mask.shape, self.at_least) == 1:
            self.whole.add(index)
            return read_rgb(image_path, size=mask.shape), mask
        image = read_rgb(image_path, size=mask.shape, at_least=self.at_least)
        if image.shape[:2] == mask.shape:  # not a JPEG: decoded whole
            self.whole.add(index)
            return image, mask
        mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
        if self.decoded is not None:
            self.decoded.store(self.items[index], (image, mask))
        return image, mask


class SegmentationDataModule(L.LightningDataModule):
    def __init__(
        self,
        coco_root: Path,
        masks_root: Path,
        image_size: tuple[int, int],
        batch_size: int,
        workers: int | str = 0,
        hflip: bool = True,
        scale: tuple[float, float] = (1.0, 1.0),
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.seed = seed  # of the train shuffle and augmentation
        self.start_epoch = 0  # a resumed run sets the epoch it starts at
        self.coco_root, self.masks_root = Path(coco_root), Path(masks_root)
        self.image_size, self.batch_size = tuple(image_size), batch_size
        self.workers = resolve_workers(workers)
        self.hflip, self.scale = hflip, tuple(scale)
        self.classes = load_labels(self.masks_root)
        self.void = load_void(self.masks_root)  # 255, or 65535 for uint16 masks
        self.split = load_split(self.masks_root)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def dataset(self, part: str, **kwargs: Any) -> SegmentationDataset:
        return SegmentationDataset(
            self.split[part], self.coco_root, self.masks_root, self.image_size, **kwargs
        )

    def train_dataloader(self) -> DataLoader:
        largest = tuple(max(1, round(side * self.scale[1])) for side in self.image_size)  # the transform's
        transform = train_transform(self.image_size, self.scale, self.hflip, self.void)
        ds = self.dataset(
            "train",
            transform=transform,
            seed=self.seed,
            at_least=largest,
            decoded=DecodedPairs.beside(self.masks_root, largest),
        )
        # drop_last avoids a final batch of one image, which BatchNorm cannot train on
        # Persistent workers draw their first indices when Lightning first iterates the loader, before a
        # resumed run's set_epoch: so the sampler starts at the epoch the run starts at.
        return self._loader(
            ds, EpochShuffle(len(ds), self.seed, self.start_epoch), drop_last=len(ds) > self.batch_size
        )

    def val_dataloader(self) -> DataLoader:
        decoded = DecodedPairs.beside(self.masks_root, self.image_size)
        return self._loader(self.dataset("val", decoded=decoded), None, drop_last=False)

    def _loader(self, ds: Dataset, sampler: Sampler | None, drop_last: bool) -> DataLoader:
        if self.workers > 0:
            # Each worker runs OpenCV on one thread (torch already does): the workers are the parallelism.
            # Set here, in the process the workers are forked from, which they copy: resizing OpenCV's
            # thread pool inside a forked worker hangs it (in pthread_cond_destroy) whenever this process
            # had just used the pool (tests/training/test_data.py reproduces it).
            cv2.setNumThreads(1)
        # Its own generator: each new iterator draws a seed from it, which would otherwise come from the
        # global RNG (dropout's) once per epoch without workers but once per run with persistent ones.
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
