"""params.yaml -> typed config: defaults, strict keys, types, ranges, and docs agreeing with code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers import committed_params

from cocoseg.core.params import (
    BaseConfig,
    ConfigError,
    DataConfig,
    MasksConfig,
    Params,
    load_params,
    parse_params,
)
from cocoseg.masks.paint import check_masks_overlap, check_overlap


@pytest.fixture
def shipped(tmp_path: Path) -> Path:
    """params.yaml as committed, not as the last experiment left the workspace."""
    path = tmp_path / "shipped.yaml"
    path.write_text(committed_params())
    return path


def test_shipped_params_parse_to_the_defaults(shipped: Path) -> None:
    # params.yaml documents the knobs; the dataclass defaults are what code without params.yaml gets.
    params = load_params(shipped)
    assert params.base == BaseConfig() == Params().base
    assert params.data == DataConfig() == Params().data
    assert params.masks == MasksConfig() == Params().masks


def test_shipped_params_values(shipped: Path) -> None:
    params = load_params(shipped)
    assert params.base.seed == 42
    assert params.data.splits == ("val2017",)
    assert params.data.coco.max_images is None
    assert params.masks.categories == "all"
    assert params.masks.priority == ()
    assert params.masks.val_fraction == 0.2 and isinstance(params.masks.val_fraction, float)


def test_empty_mapping_gives_defaults() -> None:
    params = parse_params({})
    assert (params.base, params.data, params.masks) == (BaseConfig(), DataConfig(), MasksConfig())


def test_unknown_section_names_allowed_sections() -> None:
    with pytest.raises(ConfigError, match=r"unknown section 'mask'; allowed sections: \[.*'masks'.*\]"):
        parse_params({"mask": {"overlap": "void"}})


def test_unknown_key_names_dotted_key_and_allowed_keys() -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"masks": {"overlapp": "void"}})
    msg = str(err.value)
    assert "'masks.overlapp'" in msg
    assert (
        "allowed keys: ['categories', 'crowd', 'keep_empty_images', 'max_pixels', 'overlap', 'preview', "
        "'priority', 'split', 'val_fraction', 'workers']" in msg
    )


def test_unknown_nested_key_names_full_path() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'data\.sample\.num_imgs'; allowed keys: "
        r"\['max_size', 'min_size', 'num_images'\]",
    ):
        parse_params({"data": {"sample": {"num_imgs": 20}}})


def test_bad_literal_names_allowed_values() -> None:
    with pytest.raises(ConfigError) as err:  # the masks stage checks the name against its policy table
        check_overlap(parse_params({"masks": {"overlap": "foo"}}).masks.overlap)
    assert str(err.value) == (
        "masks.overlap: 'foo' is not allowed; expected one of ['priority_area', 'smaller_on_top', 'void']"
    )
    with pytest.raises(
        ConfigError,
        match=re.escape("masks.crowd: 'ignore' is not allowed; expected one of ['void', 'background']"),
    ):
        parse_params({"masks": {"crowd": "ignore"}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"base": {"seed": "42"}}, "base.seed: '42' is not allowed; expected an integer"),
        ({"base": {"seed": True}}, "base.seed: True is not allowed; expected an integer"),
        ({"base": {"seed": 4.0}}, "base.seed: 4.0 is not allowed; expected an integer"),
        (
            {"masks": {"keep_empty_images": 1}},
            "masks.keep_empty_images: 1 is not allowed; expected true or false",
        ),
        ({"masks": {"preview": True}}, "masks.preview: True is not allowed; expected an integer"),
        ({"masks": {"val_fraction": "0.2"}}, "masks.val_fraction: '0.2' is not allowed; expected a number"),
        ({"masks": {"val_fraction": False}}, "masks.val_fraction: False is not allowed; expected a number"),
        ({"masks": {"overlap": 3}}, "masks.overlap: 3 is not allowed; expected a string"),
        (
            {"masks": {"priority": "cat"}},
            "masks.priority: 'cat' is not allowed; expected a list (list of string)",
        ),
        ({"masks": {"priority": ["cat", 2]}}, "masks.priority[1]: 2 is not allowed; expected a string"),
        ({"masks": "void"}, "masks: 'void' is not allowed; expected a mapping"),
        ({"data": {"source": "imagenet"}}, "data.source: 'imagenet' is not allowed; expected one of"),
        (
            {"data": {"coco": {"max_images": True}}},
            "data.coco.max_images: True is not allowed; expected integer or null",
        ),
        (
            {"data": {"coco": {"md5": {"val2017": 5}}}},
            "data.coco.md5.val2017: 5 is not allowed; expected a string",
        ),
    ],
)
def test_wrong_types_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"masks": {"val_fraction": 1.5}},
            "masks.val_fraction: 1.5 is not allowed; expected a number strictly between 0 and 1",
        ),
        ({"masks": {"val_fraction": 0}}, "masks.val_fraction: 0.0 is not allowed"),
        ({"masks": {"preview": -1}}, "masks.preview: -1 is not allowed; expected an integer >= 0"),
        ({"masks": {"workers": -2}}, "masks.workers: -2 is not allowed"),
        (
            {"evaluate": {"upsample": "bicubic"}},
            "evaluate.upsample: 'bicubic' is not allowed; expected exact or nearest",
        ),
        ({"train": {"workers": -1}}, 'train.workers: -1 is not allowed; expected "auto" or an integer >= 0'),
        ({"train": {"workers": "many"}}, "train.workers: 'many' is not allowed; expected"),
        ({"data": {"sample": {"num_images": 15}}}, "data.sample.num_images: 15 is not allowed"),
        ({"data": {"sample": {"min_size": 200}}}, "data.sample.min_size: 200 is not allowed"),
        ({"data": {"sample": {"min_size": 40}}}, "data.sample.min_size: 40 is not allowed"),
        ({"data": {"coco": {"max_images": 0}}}, "data.coco.max_images: 0 is not allowed"),
        ({"data": {"coco": {"base_url": "ftp://x"}}}, "data.coco.base_url: 'ftp://x' is not allowed"),
        (
            {"data": {"splits": ["test2017"]}},
            "data.splits: ['test2017'] is not allowed; expected ['val2017']",
        ),
        ({"data": {"source": "coco2017", "splits": ["test2017"]}}, "data.splits: 'test2017' is not allowed"),
        (
            {"data": {"splits": ["train2017", "val2017"]}},
            "data.splits: ['train2017', 'val2017'] is not allowed",
        ),
        (
            {"masks": {"split": "coco"}},
            "masks.split: 'coco' is not allowed; expected auto or pooled unless data.splits holds train2017",
        ),
        ({"masks": {"split": "random"}}, "masks.split: 'random' is not allowed; expected one of ['auto', "),
    ],
)
def test_out_of_range_values_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert str(err.value).startswith(message)


def test_train_workers_auto_or_a_count() -> None:
    assert parse_params({}).train.workers == "auto"
    assert parse_params({"train": {"workers": 3}}).train.workers == 3


def test_a_model_may_override_train_compile() -> None:
    params = parse_params(
        {
            "train": {"compile": True},
            "models": {"unet": {"arch": "unet", "compile": False}, "fastscnn": {"arch": "fastscnn"}},
        }
    )
    assert params.model_compile("unet") is False
    assert params.model_compile("fastscnn") is True
    assert parse_params({"models": {"unet": {"compile": True}}}).model_compile("unet") is True


def test_integer_is_accepted_as_float() -> None:
    assert parse_params({"masks": {"val_fraction": 0.5}}).masks.val_fraction == 0.5
    assert parse_params({"data": {"source": "coco2017", "splits": ["train2017", "val2017"]}}).data.splits == (
        "train2017",
        "val2017",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("all", "all"), ("voc", "voc"), (["dog", "cat"], ("dog", "cat"))],
)
def test_categories_forms(value: object, expected: object) -> None:
    assert parse_params({"masks": {"categories": value}}).masks.categories == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "some",
            "masks.categories: 'some' is not allowed; expected 'all', 'voc' or a list of COCO category names",
        ),
        ([], "masks.categories: [] is not allowed; expected 'all', 'voc' or a non-empty list"),
        (5, "masks.categories: 5 is not allowed; expected string or list of string"),
        (["cat", 1], "masks.categories: ['cat', 1] is not allowed"),
    ],
)
def test_bad_categories(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"masks": {"categories": value}})
    assert str(err.value).startswith(message)


def test_load_params_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"masks": {"overlap": "foo"}}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: masks\.overlap: 'foo' is not allowed"):
        load_params(path, check_masks_overlap)  # a stage's own check, named by the file too
    with pytest.raises(ConfigError, match=r"file not found"):
        load_params(tmp_path / "missing.yaml")
    path.write_text("masks: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_params(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"expected a mapping of sections"):
        load_params(path)


def test_configs_are_frozen() -> None:
    with pytest.raises(AttributeError):
        MasksConfig().overlap = "void"  # type: ignore[misc]


def test_masks_split_mapping_names_each_part_a_single_name_is_a_list() -> None:
    data = {"source": "coco2017", "splits": ["train2017", "val2017"]}
    params = parse_params({"data": data, "masks": {"split": {"train": "train2017", "val": ["val2017"]}}})
    assert params.masks.split == {"train": ("train2017",), "val": ("val2017",)}
    with pytest.raises(ConfigError) as err:  # every split built must be in a part
        parse_params({"data": data, "masks": {"split": {"train": ["train2017"], "val": ["train2017"]}}})
    assert "(it is in 'train' too)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_params(
            {
                "data": {**data, "splits": ["train2017", "val2017"]},
                "masks": {"split": {"train": ["train2017"], "val": ["val2017"], "test": ["val2017"]}},
            }
        )
    assert "a split of no other part (it is in 'val' too)" in str(err.value)


def test_masks_split_mapping_must_name_every_split_built() -> None:
    data = {"source": "coco2017", "splits": ["train2017", "val2017"]}
    with pytest.raises(ConfigError) as err:
        parse_params({"data": data, "masks": {"split": {"train": ["train2017"], "val": ["train2017x"]}}})
    assert str(err.value) == (
        "masks.split: 'train2017x' is not allowed; expected a split of data.splits ['train2017', 'val2017']"
    )


@pytest.mark.parametrize(
    ("split", "message"),
    [
        (
            {"train": ["val2017"]},
            "masks.split: {'train': ['val2017']} is not allowed; expected a mapping with a 'val' key",
        ),
        (
            {"train": ["val2017"], "val": []},
            "masks.split.val: [] is not allowed; expected a non-empty list of split names",
        ),
        (
            {"train": ["val2017"], "val": ["val2017"]},
            "masks.split.val: 'val2017' is not allowed; expected a split of no other part (it is in 'train' too)",
        ),
        (
            {"train": ["val2017"], "val": ["val2017"], "holdout": ["x"]},
            "masks.split: 'holdout' is not allowed; expected a mapping with keys from ['train', 'val', 'test']",
        ),
        (
            {"train": ["val2017"], "val": ["valid"]},
            ("masks.split: 'valid' is not allowed; expected a split of data.splits ['val2017']"),
        ),
        (
            "bogus",
            "masks.split: 'bogus' is not allowed; expected one of ['auto', 'coco', 'pooled'] or a mapping",
        ),
    ],
)
def test_bad_masks_split(split: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"masks": {"split": split}})
    assert str(err.value) == message
