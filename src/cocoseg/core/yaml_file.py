"""Read a YAML file as an input like any other: bounded in bytes, in nesting, and in what its aliases expand to.

YAML aliases (``*name``) share one value among many places. A file of 1.2 kB whose aliases nest ten
deep names a billion values: PyYAML builds them shared, in kilobytes, but anything that walks the result
(a type check, ``json.dumps`` of a run's fingerprint) expands it to gigabytes. So the document is first
composed into nodes (linear in the text), the values its aliases expand to are counted with every shared
node counted once per place it appears, and only a document under the bound is turned into values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cocoseg.core.errors import UserError
from cocoseg.core.limits import MAX_PARAMS_BYTES, MAX_PARAMS_NODES


class YamlRefused(UserError, ValueError):
    """A YAML file too big, too deep or whose aliases expand too far; the message says which."""


def load_yaml(path: Path, max_bytes: int = MAX_PARAMS_BYTES, max_nodes: int = MAX_PARAMS_NODES) -> Any:
    """The file's one document as Python values (None for an empty file). FileNotFoundError,
    ``yaml.YAMLError`` for bad syntax, YamlRefused for the bounds; messages do not name the file."""
    size = Path(path).stat().st_size
    if size > max_bytes:
        raise YamlRefused(f"{size} bytes, over the {max_bytes} a parameter file may have")
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise YamlRefused(f"not UTF-8 text ({err})") from None
    return parse_yaml(text, max_nodes)


def parse_yaml(text: str, max_nodes: int = MAX_PARAMS_NODES) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded_size(node, max_nodes)
        return loader.construct_document(node)
    except RecursionError:
        raise YamlRefused("nested too deeply to be a parameter file") from None
    finally:
        loader.dispose()


def expanded_size(root: yaml.Node, limit: int) -> int:
    """The number of values under ``root`` with every alias expanded; YamlRefused over ``limit`` or for an
    alias that contains itself. Each distinct node is visited once, so this is linear in the text."""
    sizes: dict[int, int] = {}  # id(node) -> its expanded size
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > limit:
                raise YamlRefused(
                    f"its aliases expand to more than {limit} values (a YAML alias bomb?); "
                    "write the values out, or use fewer aliases"
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlRefused("an alias contains itself; the file would never end")
        on_path.add(key)
        stack.append((node, True))
        stack += [(child, False) for child in _children(node) if id(child) not in sizes]
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
