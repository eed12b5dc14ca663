"""YAML files validated by pydantic models, with errors that name the file, the line and the dotted field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from limit.errors import LimitError

M = TypeVar("M", bound=BaseModel)


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
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
        lines = _line_index(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise LimitError(f"{where}: invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise LimitError(f"{path}: a {what} must be a YAML mapping")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        field, msg = first_error(e)
        line = _line_for(lines, field)
        raise LimitError(f"{path}:{line}: {field}: {msg}" if line else f"{path}: {field}: {msg}") from None


def first_error(e: ValidationError) -> tuple[str, str]:
    """(dotted field, message) of a validation error's first entry."""
    err = e.errors()[0]
    ctx_err = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_err, FieldError):
        return ctx_err.field, ctx_err.message
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return field, "unknown field"
    return field, err["msg"].removeprefix("Value error, ")


def _line_index(text: str) -> dict[str, int]:
    """Map each dotted key path in the YAML document to its 1-based line number."""
    index: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = f"{path}.{key.value}" if path else str(key.value)
                index[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = f"{path}.{i}" if path else str(i)
                index[child] = item.start_mark.line + 1
                walk(item, child)

    root = yaml.compose(text)
    if root is not None:
        walk(root, "")
    return index


def _line_for(lines: dict[str, int], field: str) -> int | None:
    parts = field.split(".")
    while parts:
        if ".".join(parts) in lines:
            return lines[".".join(parts)]
        parts.pop()
    return None
