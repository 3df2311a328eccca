"""cocoseg-predict's output names: never two inputs written to one file (issue 9)."""

from __future__ import annotations

from pathlib import Path

from cocoseg.evaluation.predict import output_stems


def test_inputs_sharing_a_stem_get_distinct_output_names() -> None:
    images = [Path("a.jpg"), Path("a.png"), Path("other/a.jpg"), Path("b.jpg"), Path("B.PNG"), Path("c.jpg")]
    names = output_stems(images)
    assert names == {
        Path("a.jpg"): "a.jpg",
        Path("a.png"): "a.png",
        Path("other/a.jpg"): "a.jpg.2",
        Path("b.jpg"): "b.jpg",
        Path("B.PNG"): "B.PNG",
        Path("c.jpg"): "c",
    }
    assert len({n.casefold() for n in names.values()}) == len(images)  # distinct even on a case-blind disk
