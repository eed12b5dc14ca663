"""What a plan refuses before any step runs, beyond what the spec's own validation catches."""

from __future__ import annotations

import json
from pathlib import Path

from limit.errors import LimitError
from limit.execution.locations import local_path
from limit.spec.study import ModelSpec, Study


def check_subset_size(study: Study, name: str, origin: str) -> None:
    """Fail at plan time when a subset asks for more rows than a local source file has lines."""
    subset = study.datasets[name].subset
    source = study.datasets[subset.of].source
    if source is None or source.jsonl is None:
        return  # hub sources are checked by the prepare step, which knows the row count
    path = local_path(source.jsonl)
    rows = sum(1 for line in path.read_bytes().splitlines() if line.strip()) if path.is_file() else None
    if rows is not None and subset.sample > rows:
        raise LimitError(
            f"{origin}: datasets.{name}.subset.sample: {subset.sample} rows asked of '{subset.of}', "
            f"which has {rows} ({source.jsonl})"
        )


def check_gauntlet_data(study: Study, origin: str) -> None:
    """Fail at plan time when local gauntlet data lacks some of the suite's files.

    Every average would be incomplete, so `select` could not choose an epoch: better said before the
    finetunes than after. Remote locations (s3://, llm-foundry@) are checked by the gauntlet step.
    """
    from limit.gauntlet.benchmarks import suite

    spec = study.gauntlet
    try:
        benchmarks = suite(spec.suite, spec.tasks)
    except LimitError as e:
        raise LimitError(f"{origin}: {e}") from None
    locations = spec.locations
    if not study.runs or not all(location.local for location in locations):
        return
    missing = [b.name for b in benchmarks if not any((loc.path / b.file).is_file() for loc in locations)]
    if missing:
        raise LimitError(
            f"{origin}: gauntlet.data: {len(missing)} of the suite's {len(benchmarks)} files are not in "
            f"{spec.data} ({', '.join(missing)}): no epoch could get a complete average; add them "
            "(limit gauntlet-convert) or use llm-foundry@be467aee1744566e46e9b993c1ff23ab01fe5c55"
        )


def check_models(study: Study, origin: str) -> None:
    """Fail at plan time on a model no step could load: a `path:` that is not a saved model (no folder, no
    config.json, no model_type in it), or an `hf:` id that is a path (`../`, absolute) rather than org/name."""
    for name, spec in study.models.items():
        check_model(spec, f"{origin}: models.{name}")


def check_model(spec: ModelSpec, where: str) -> None:
    if spec.hf is not None:
        parts = spec.hf.split("/")
        if spec.hf.startswith(("/", "~")) or ".." in parts or "." in parts or len(parts) > 2 or "" in parts:
            raise LimitError(f"{where}.hf: '{spec.hf}' is not a hub id (name or org/name): a folder goes in path:")
    if spec.path is not None:
        _check_saved_model(Path(spec.path).expanduser(), f"{where}.path")


def _check_saved_model(folder: Path, where: str) -> None:
    config = folder / "config.json"
    if not folder.is_dir():
        raise LimitError(f"{where}: {folder}: no such folder")
    if not config.is_file():
        raise LimitError(f"{where}: {folder}: no config.json in the folder: not a saved model")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise LimitError(f"{where}: {config}: not a JSON object") from None
    if not model_type:
        raise LimitError(f"{where}: {config}: no model_type: transformers cannot tell which model it is")
