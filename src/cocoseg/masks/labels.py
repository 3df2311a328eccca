"""Which COCO categories become classes, their contiguous ids, priorities and display colours."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from cocoseg.core.images import palette
from cocoseg.core.layout import VOC_CATEGORIES, VOID
from cocoseg.core.params import ConfigError


@dataclass(frozen=True)
class LabelMap:
    names: tuple[str, ...]  # index 0 is "background"; index k is class k
    coco_ids: tuple[int, ...]  # index 0 is 0 (no COCO category)
    priorities: dict[int, int]  # COCO category id -> priority (larger wins), unlisted 0

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def class_of(self, coco_id: int) -> int | None:
        """Contiguous class for a COCO category id, or None if that category is not selected."""
        return self._class_ids.get(coco_id)

    @functools.cached_property
    def _class_ids(self) -> dict[int, int]:
        return {cid: k for k, cid in enumerate(self.coco_ids) if k > 0}

    def to_json(self) -> dict[str, Any]:
        colours = palette(self.num_classes)
        return {
            "void": VOID,
            "classes": [
                {"id": k, "coco_id": self.coco_ids[k] or None, "name": self.names[k], "color": colours[k]}
                for k in range(self.num_classes)
            ],
        }


def build_label_map(categories: list[dict], selection: str | tuple[str, ...],
                    priority: tuple[str, ...]) -> LabelMap:
    """Map the selected COCO categories to 1..K: by COCO id for 'all', in the given order otherwise."""
    by_name = {c["name"]: c for c in categories}
    if selection == "all":
        chosen = sorted(categories, key=lambda c: c["id"])
    else:
        names = VOC_CATEGORIES if selection == "voc" else selection
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ConfigError(f"masks.categories: unknown category {unknown[0]!r}; valid names: "
                              f"{sorted(by_name)}")
        if len(set(names)) != len(names):
            raise ConfigError(f"masks.categories: a name is listed twice in {list(names)}")
        chosen = [by_name[n] for n in names]
    if len(chosen) > 254:
        raise ConfigError(f"masks.categories: {len(chosen)} classes do not fit a uint8 mask with 255 as void")
    unknown = [n for n in priority if n not in {c["name"] for c in chosen}]
    if unknown:
        raise ConfigError(f"masks.priority: {unknown[0]!r} is not a selected category; selected: "
                          f"{[c['name'] for c in chosen]}")
    # The first name listed gets the highest priority; unlisted categories share 0, the lowest.
    priorities = {by_name[n]["id"]: len(priority) - i for i, n in enumerate(priority)}
    return LabelMap(("background", *(c["name"] for c in chosen)), (0, *(c["id"] for c in chosen)), priorities)
