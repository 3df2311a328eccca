"""Which categories become classes, their contiguous ids, priorities, display colours and void label.

Category ids are the file's own (0, gaps, ids far above 90 are all fine); class ids are 1..K in the
order chosen, 0 is background. Up to 254 classes (255 with background) the semantic masks are uint8
with 255 as void, as for COCO; beyond, uint16 with 65535 as void (``cocoseg.core.layout.label_dtype``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from cocoseg.core.images import palette
from cocoseg.core.layout import VOC_CATEGORIES, VOID_WIDE, label_dtype, void_label
from cocoseg.core.params import ConfigError

SUPERCATEGORY = "supercategory:"  # a masks.categories entry that stands for a whole supercategory


@dataclass(frozen=True)
class LabelMap:
    names: tuple[str, ...]  # index 0 is "background"; index k is class k
    coco_ids: tuple[int, ...]  # index 0 is 0 (no category)
    priorities: dict[int, int]  # category id -> priority (larger wins), unlisted 0
    unused: tuple[dict[str, Any], ...] = ()  # categories left out because no kept annotation uses them

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def void(self) -> int:
        """The label of ignored pixels: 255, or 65535 when the classes need uint16 masks."""
        return void_label(self.num_classes)

    @property
    def dtype(self) -> np.dtype:
        return label_dtype(self.num_classes)

    def class_of(self, coco_id: int) -> int | None:
        """Contiguous class for a category id, or None if that category is not selected."""
        return self._class_ids.get(coco_id)

    @functools.cached_property
    def _class_ids(self) -> dict[int, int]:
        return {cid: k for k, cid in enumerate(self.coco_ids) if k > 0}

    def to_json(self) -> dict[str, Any]:
        colours = palette(self.num_classes)
        return {
            "void": self.void,
            "classes": [
                {
                    "id": k,
                    "coco_id": self.coco_ids[k] if k else None,
                    "name": self.names[k],
                    "color": colours[k],
                }
                for k in range(self.num_classes)
            ],
        }


def build_label_map(
    categories: list[dict],
    selection: str | tuple[str, ...],
    priority: tuple[str, ...],
    use: Mapping[int, int] | None = None,
) -> LabelMap:
    """Map the selected categories to 1..K: ``all`` = every category that ``use`` (category id -> kept
    annotations) counts, by id; ``voc`` and lists in the order given, a ``supercategory:<name>`` entry
    standing for the used categories of that supercategory, by id. ``use`` None: every category is used."""
    used = [c for c in sorted(categories, key=lambda c: c["id"]) if use is None or use.get(c["id"], 0) > 0]
    if selection == "all":
        chosen = used
    else:
        chosen = _chosen_by_name(
            categories, used, VOC_CATEGORIES if selection == "voc" else selection, selection == "voc"
        )
    if len(chosen) >= VOID_WIDE:
        raise ConfigError(
            f"masks.categories: {len(chosen)} classes do not fit a uint16 mask with {VOID_WIDE} as void"
        )
    unknown = [n for n in priority if n not in {c["name"] for c in chosen}]
    if unknown:
        raise ConfigError(
            f"masks.priority: {unknown[0]!r} is not a selected category; selected: "
            f"{[c['name'] for c in chosen]}"
        )
    by_name = {c["name"]: c for c in categories}
    # The first name listed gets the highest priority; unlisted categories share 0, the lowest.
    priorities = {by_name[n]["id"]: len(priority) - i for i, n in enumerate(priority)}
    kept = {c["id"] for c in chosen} | {c["id"] for c in used}
    unused = tuple(
        {"id": c["id"], "name": c["name"]}
        for c in sorted(categories, key=lambda c: c["id"])
        if c["id"] not in kept
    )
    return LabelMap(
        ("background", *(c["name"] for c in chosen)), (0, *(c["id"] for c in chosen)), priorities, unused
    )


def _chosen_by_name(
    categories: list[dict], used: list[dict], names: tuple[str, ...], voc: bool
) -> list[dict]:
    """The categories a list of names and ``supercategory:<name>`` entries selects, in its order."""
    by_name = {c["name"]: c for c in categories}
    if voc and any(n not in by_name for n in names):
        missing = [n for n in names if n not in by_name]
        raise ConfigError(
            f"masks.categories: voc selects the 20 PASCAL VOC classes by their COCO names, and this "
            f"data is not COCO (no category {missing[0]!r}); list your own category names instead"
        )
    supers = sorted({c["supercategory"] for c in categories if isinstance(c.get("supercategory"), str)})
    chosen = []
    for name in names:
        if name.startswith(SUPERCATEGORY):
            group = name[len(SUPERCATEGORY) :]
            if group not in supers:
                raise ConfigError(
                    f"masks.categories: unknown supercategory {group!r} in {name!r}; "
                    f"valid supercategories: {supers}"
                )
            chosen += [c for c in used if c.get("supercategory") == group]
        elif name not in by_name:
            raise ConfigError(f"masks.categories: unknown category {name!r}; valid names: {sorted(by_name)}")
        else:
            chosen.append(by_name[name])
    seen: set[int] = set()
    for c in chosen:
        if c["id"] in seen:
            raise ConfigError(f"masks.categories: {c['name']!r} is selected twice in {list(names)}")
        seen.add(c["id"])
    return chosen
