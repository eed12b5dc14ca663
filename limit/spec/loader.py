"""YAML files validated by pydantic models, with errors that name the file, the line and the dotted field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from limit.errors import LimitError
from limit.execution.io import read_text

M = TypeVar("M", bound=BaseModel)
MAX_ALIAS_NODES = 1000  # nodes that YAML aliases may add to a document once expanded


class FieldError(ValueError):
    """A validation error that knows its dotted field path (raised inside model validators)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def resolve_named(name: str, folder: Path, what: str) -> Path:
    """`name` is a file stem in `folder` or a path to a YAML file."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise LimitError(f"{name}: {what} file not found")
        return path
    candidate = folder / f"{name}.yaml"
    if not candidate.is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise LimitError(f"unknown {what} '{name}' (known: {known}; or give a YAML path)")
    return candidate


def load_model(path: Path, model: type[M], what: str) -> M:
    text = read_text(path)
    data, lines = parse_yaml(text, path)
    if not isinstance(data, dict):
        raise LimitError(f"{path}: a {what} must be a YAML mapping")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        field, msg = first_error(e)
        line = _line_for(lines, field)
        raise LimitError(f"{path}:{line}: {field}: {msg}" if line else f"{path}: {field}: {msg}") from None


def parse_yaml(text: str, path: Path) -> tuple[Any, dict[str, int]]:
    """The document and the line of each dotted key; refuses what a spec must not hold.

    The document is composed once into nodes, checked (aliases that would expand it past
    `MAX_ALIAS_NODES` extra nodes, recursive aliases, keys given twice), and only then built: a small file
    cannot make anything downstream walk an exponential tree, and a repeated key never silently wins.
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {}
        _check_aliases(root, path)
        lines = _line_index(root, path)
        return loader.construct_document(root), lines
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise LimitError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    except RecursionError:
        raise LimitError(f"{path}: invalid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def _check_aliases(root: yaml.Node, path: Path) -> None:
    """Refuse a recursive alias, or aliases adding more than MAX_ALIAS_NODES nodes once expanded."""
    sizes: dict[int, int] = {}  # expanded size of each node, computed once however often it is aliased
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in open_nodes:
            raise LimitError(f"{path}:{node.start_mark.line + 1}: invalid YAML: an alias refers to its own anchor")
        open_nodes.add(id(node))
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        total = 1 + (sum(size(c) for c in children) if isinstance(node, yaml.CollectionNode) else 0)
        open_nodes.discard(id(node))
        sizes[id(node)] = total
        return total

    expanded = size(root)
    if expanded - len(sizes) > MAX_ALIAS_NODES:
        raise LimitError(
            f"{path}: invalid YAML: aliases expand it by {expanded - len(sizes):,} nodes "
            f"(at most {MAX_ALIAS_NODES:,}): write the values out"
        )


def first_error(e: ValidationError) -> tuple[str, str]:
    """(dotted field, message) of a validation error's first entry."""
    err = e.errors()[0]
    ctx_err = (err.get("ctx") or {}).get("error")
    where = ".".join(str(p) for p in err["loc"])
    if isinstance(ctx_err, FieldError):  # its field is relative to the model that raised it
        return ".".join(p for p in (where, ctx_err.field) if p), ctx_err.message
    field = where or "(top level)"
    if err["type"] == "extra_forbidden":
        return field, "unknown field"
    return field, err["msg"].removeprefix("Value error, ")


def _line_index(root: yaml.Node, path: Path) -> dict[str, int]:
    """Map each dotted key path in the document to its 1-based line number; refuse a key given twice."""
    index: dict[str, int] = {}

    def walk(node: yaml.Node, where: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):  # a complex key: the constructor refuses it
                    continue
                if key.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: explicit keys may override it
                    walk(value, where)
                    continue
                child = f"{where}.{key.value}" if where else str(key.value)
                line = key.start_mark.line + 1
                if key.value in seen:
                    raise LimitError(f"{path}:{line}: {child}: key given twice (first on line {seen[key.value]})")
                seen[key.value] = line
                index[child] = line
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = f"{where}.{i}" if where else str(i)
                index[child] = item.start_mark.line + 1
                walk(item, child)

    walk(root, "")
    return index


def _line_for(lines: dict[str, int], field: str) -> int | None:
    parts = field.split(".")
    while parts:
        if ".".join(parts) in lines:
            return lines[".".join(parts)]
        parts.pop()
    return None
