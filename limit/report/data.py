"""The report's data, read from stored outputs only: each model at its chosen epoch (or the base model as it
is), each judged pair's result and two sample judgments, and where every number came from.

Reads small files (`read_text`), never whole step folders: on S3 a gauntlet step's details or a finetune's
weights are not downloaded. With `partial` (`limit report` on a study still running) a model or pair whose
steps are not complete is kept as pending instead of failing the report.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from limit import __version__
from limit.errors import LimitError
from limit.execution import outputs
from limit.execution.store import Store, step_name
from limit.gauntlet.benchmarks import SUITES
from limit.gauntlet.scoring import check_asked
from limit.report import sweeps
from limit.report.agreement import paradigm_agreement
from limit.report.inputs import ReportModel, ReportPair
from limit.stats.bootstrap import SEED

SAMPLE_CHARS = 700  # a sample response is cut to this many characters in the report
BROWSE_PROMPTS = 60  # judged prompts per pair in report.html's browser
BROWSE_ITEMS = 3  # gauntlet rows per benchmark and model in report.html's browser


def assemble(
    study: str,
    models: list[ReportModel],
    pairs: list[ReportPair],
    store: Store,
    *,
    calibration: str | None = None,
    seed: int = SEED,
    parent_run_id: str | None = None,
    partial: bool = False,
) -> dict[str, Any]:
    """`calibration`: the judge's calibrate step, where the study calibrates it. `seed`: every bootstrap's (the
    study's judge.bootstrap_seed, which its judge steps drew their intervals with too)."""
    reader = _Reader(store, partial)
    rows = [model_row(m, reader) for m in models]
    base_of = {row["name"]: row["base"] for row in rows}
    pair_rows = [pair_row(p, reader, base_of) for p in pairs]
    steps = sorted({ref for row in rows + pair_rows for ref in row.get("steps", [])} | {calibration} - {None})
    return {
        "study": study,
        "models": rows,
        "pairs": pair_rows,
        "replicates": sweeps.replicate_groups(rows, pair_rows),
        "comparisons": {
            "gauntlet": sweeps.gauntlet_comparisons(rows, reader.rows, seed),
            "win_rate": sweeps.win_rate_comparisons(rows, pair_rows, reader.outcomes, seed),
        },
        "agreement": paradigm_agreement(rows, pair_rows, reader.rows, reader.outcomes, seed),
        "per_sample": per_sample(rows, pair_rows, reader),
        "calibration": calibration_row(calibration, reader),
        "provenance": {
            "limit_version": __version__,
            "git_commit": git_commit(),
            "mlflow_parent_run": parent_run_id,
            "bootstrap_seed": seed,
            "steps": steps,
            "step_names": {ref: reader.name(ref) for ref in steps},
        },
    }


class _Reader:
    """Small files of completed steps; a step that is not complete raises, or gives None when `partial`."""

    def __init__(self, store: Store, partial: bool):
        self.store, self.partial = store, partial
        self._rows: dict[str, dict | None] = {}
        self._outcomes: dict[str, list[dict] | None] = {}
        self._details: dict[tuple[str, str], outputs.Details | None] = {}

    def manifest(self, ref: str) -> dict | None:
        manifest = self.store.manifest(ref)
        if manifest is None and not self.partial:
            raise LimitError(f"{self.store.url(ref)}: upstream step is not complete (no _manifest.json)")
        return manifest

    def name(self, ref: str) -> str | None:
        """Step `ref`'s readable name (as its MLflow run is named); None while it is pending."""
        manifest = self.manifest(ref)
        return (
            None if manifest is None else step_name(ref.split("/")[0], (manifest.get("input") or {}).get("tags") or {})
        )

    def output(self, ref: str, name: str, model: type[outputs.T], optional: bool = False) -> outputs.T | None:
        """`name` of step `ref` read as `model`; None while the step is pending, or when an `optional` file
        is absent from it."""
        text = self._read(ref, name, optional)
        return None if text is None else outputs.parse(text, model, f"{self.store.url(ref)}/{name}")

    def lines(self, ref: str, name: str, model: type[outputs.T], optional: bool = False) -> list[outputs.T] | None:
        text = self._read(ref, name, optional)
        return None if text is None else outputs.parse_lines(text, model, f"{self.store.url(ref)}/{name}")

    def _read(self, ref: str, name: str, optional: bool) -> str | None:
        if self.manifest(ref) is None:
            return None
        text = self.store.read_text(ref, name)
        if text is None and not optional:
            raise LimitError(f"{self.store.url(ref)}/{name}: missing from a completed step")
        return text

    def scores(self, ref: str) -> outputs.Scores | None:
        """A gauntlet step's scores.json, refused unless it accounts for every benchmark the step was asked."""
        scores = self.output(ref, "scores.json", outputs.Scores)
        if scores is not None:
            check_asked(scores, (self.manifest(ref) or {}).get("input"), f"{self.store.url(ref)}/scores.json")
        return scores

    def rows(self, model: dict) -> dict[str, dict[int, float]] | None:
        """Per benchmark, each row's correctness (1/0) where the model's scores came from; None when a
        benchmark has no details (a step that kept scores only)."""
        ref = model.get("scored_by")
        if ref and ref not in self._rows:
            found = {name: self.details(ref, name) for name in model.get("benchmarks", {})}
            self._rows[ref] = None if None in found.values() else {n: d.correctness() for n, d in found.items()}
        return self._rows.get(ref) if ref else None

    def details(self, ref: str, benchmark: str) -> outputs.Details | None:
        """A benchmark's per-row details in gauntlet step `ref`, or None where the step kept scores only."""
        if (ref, benchmark) not in self._details:
            name = f"details/{benchmark}.json"
            self._details[ref, benchmark] = self.output(ref, name, outputs.Details, optional=True)
        return self._details[ref, benchmark]

    def outcomes(self, pair: dict) -> list[dict] | None:
        """Who the judge preferred, per sampling seed and prompt, in a judged pair."""
        ref = pair.get("judge")
        if ref and ref not in self._outcomes:
            rows = self.annotations(ref) or []
            self._outcomes[ref] = [r.model_dump(include={"seed", "prompt_id", "winner"}) for r in rows] or None
        return self._outcomes.get(ref) if ref else None

    def annotations(self, ref: str) -> list[outputs.Annotation] | None:
        return self.lines(ref, "annotations.jsonl", outputs.Annotation, optional=True)


def model_row(model: ReportModel, reader: _Reader) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": model.name,
        "kind": model.kind,
        "base": model.model if model.kind == "run" else model.name,
        "model": model.model,
        "dataset": model.dataset,
        "rows": model.rows,
        "group": model.group,
        "series": model.series,
        "seed": model.seed,
        "epoch": None,
        "epochs": [],
        "train_tokens": None,
    }
    if model.selection:
        found = _chosen_epoch(model, reader)
    else:
        found = _scores_row(reader.scores(model.gauntlet), [model.gauntlet])
    if model.contamination:
        checked = reader.output(model.contamination, "contamination.json", outputs.ContaminationCheck)
        row["contamination"] = checked.model_dump() if checked else None
    if found is None:
        return row | {"status": "pending", "average": None, "categories": {}, "benchmarks": {}, "complete": False}
    return row | found | {"status": "ready", "examples": examples(found, reader)}


def examples(found: dict, reader: _Reader) -> dict[str, list[dict]]:
    """The first rows of each benchmark where the scores came from, for report.html's browser."""
    out = {}
    for name in found["benchmarks"]:
        details = reader.details(found["scored_by"], name)
        if details is not None:
            out[name] = [row.model_dump() for row in details.details[:BROWSE_ITEMS]]
    return out


def per_sample(rows: list[dict], pairs: list[dict], reader: _Reader) -> list[dict[str, Any]]:
    """Where the per-sample outputs behind the numbers are, those that exist: each scoring gauntlet step's
    `details/<benchmark>.json` and each judge step's `annotations.jsonl`."""
    out = []
    for row in rows:
        ref = row.get("scored_by")
        found = [n for n in row.get("benchmarks", {}) if ref and reader.details(ref, n) is not None]
        if found:
            where = f"{reader.store.url(ref)}/details/<benchmark>.json"
            out.append(
                {
                    "of": row["name"],
                    "location": where,
                    "benchmarks": len(found),
                    "of_benchmarks": len(row["benchmarks"]),
                }
            )
    for pair in pairs:
        if pair.get("browse"):
            of = f"{pair['a']} vs {pair['b']} ({pair['prompts']})"
            out.append({"of": of, "location": f"{reader.store.url(pair['judge'])}/annotations.jsonl"})
    return out


def _scores_row(scores: outputs.Scores | None, steps: list[str]) -> dict | None:
    """`steps[-1]` is the gauntlet step the scores come from."""
    if scores is None:
        return None
    fields = {"category", "score", "accuracy", "n", "stderr", "score_stderr", "random_baseline"}
    return {
        "average": scores.average,
        "categories": scores.categories,
        "average_stderr": scores.average_stderr,
        "categories_stderr": scores.categories_stderr,
        "scored_rows": _counts(scores),
        "missing": scores.missing,
        "not_available": not_available(scores),
        "benchmarks": {name: r.model_dump(include=fields) for name, r in scores.benchmarks.items()},
        "complete": scores.average is not None,
        "suite": scores.suite,
        "scored_by": steps[-1],
        "steps": steps,
    }


def _counts(scores: outputs.Scores) -> dict[str, int]:
    """Scored rows per category and in all (`total`): the n beside a category's or the average's score."""
    counts = {"total": sum(b.n or 0 for b in scores.benchmarks.values())}
    for bench in scores.benchmarks.values():
        if bench.category:
            counts[bench.category] = counts.get(bench.category, 0) + (bench.n or 0)
    return counts


def not_available(scores: outputs.Scores) -> dict[str, str]:
    """Why a category (by name) or the `average` has no score: the benchmarks it misses, or none asked."""
    category_of = {b.name: b.category for b in SUITES.get(scores.suite, ())}
    reasons = {}
    for category, value in scores.categories.items():
        if value is None:
            absent = [n for n in scores.missing if category_of.get(n) == category]
            reasons[category] = (
                f"no data for {', '.join(absent)} (not found in gauntlet.data)"
                if absent
                else "no benchmark of this category was asked for (gauntlet.tasks)"
            )
    if scores.average is None:
        reasons["average"] = f"categories without a score: {', '.join(c for c in scores.categories if c in reasons)}"
    return reasons


def _chosen_epoch(model: ReportModel, reader: _Reader) -> dict | None:
    """A finetune at the epoch `select` chose: that epoch's own gauntlet scores (or, where the study scores
    the chosen checkpoint again on the whole suite, those), its per-epoch curve and the tokens it trained on."""
    selection = model.selection
    choice = reader.output(selection, "choice.json", outputs.Choice)
    if choice is None:
        return None
    epochs = reader.manifest(selection)["input"]["epochs"]
    chosen_ref = model.gauntlet or next(e["gauntlet"] for e in epochs if e["epoch"] == choice.epoch)
    found = _scores_row(reader.scores(chosen_ref), [selection, choice.finetune, chosen_ref])
    if found is None:
        return None
    finetune = reader.manifest(choice.finetune)
    return found | {
        "epoch": choice.epoch,
        "epochs": [e.model_dump(include={"epoch", "average", "categories"}) for e in choice.epochs],
        "train_tokens": _tokens_at(finetune, choice.epoch),
        "rows": _prepared_rows(finetune, reader) or model.rows,
        "method": ((finetune or {}).get("input", {}).get("train", {}).get("method")) or "full",
        "selection": choice.selection,
        "split": choice.split,
    }


def _prepared_rows(finetune: dict | None, reader: _Reader) -> int | None:
    """The rows of the dataset the finetune trained on, as its prepare step counted them."""
    data = (finetune or {}).get("input", {}).get("data")
    return ((reader.manifest(data) or {}).get("summary") or {}).get("rows") if data else None


def _tokens_at(finetune: dict | None, epoch: int) -> int | None:
    """Real tokens the checkpoint of `epoch` trained on: every epoch sees every example once."""
    summary = (finetune or {}).get("summary", {})
    epochs = (finetune or {}).get("input", {}).get("train", {}).get("epochs")
    if not summary.get("train_tokens") or not epochs:
        return None
    return round(summary["train_tokens"] * epoch / epochs)


def pair_row(pair: ReportPair, reader: _Reader, base_of: dict[str, str]) -> dict[str, Any]:
    row = {"a": pair.a, "b": pair.b, "prompts": pair.prompts, "base": base_of.get(pair.a), "judge": pair.judge}
    result = reader.output(pair.judge, "result.json", outputs.JudgeResult)
    if result is None:
        return row | {"status": "pending", "win_rate_a": None}
    judged = reader.manifest(pair.judge)["input"]
    annotations = reader.annotations(pair.judge) or []
    steps = [pair.judge, judged["a"], judged["b"]]
    shown = {"samples": pick_samples(annotations), "browse": [browsed(a) for a in annotations[:BROWSE_PROMPTS]]}
    return row | result.model_dump() | {"status": "ready", "steps": steps} | shown


def calibration_row(ref: str | None, reader: _Reader) -> dict[str, Any] | None:
    """The judge against GPT-4-0613 on the released verdicts; None for an uncalibrated study."""
    if ref is None:
        return None
    found = reader.output(ref, "calibration.json", outputs.Calibration)
    return (
        {"status": "pending", "step": ref} if found is None else found.model_dump() | {"status": "ready", "step": ref}
    )


def browsed(annotation: outputs.Annotation) -> dict:
    """A judged prompt as report.html shows it: the responses cut, their whole lengths, the verdict."""
    keys = {"seed", "prompt_id", "instruction", "output_a", "output_b", "winner"}
    row = {k: _cut(v) for k, v in annotation.model_dump(include=keys).items()}
    return row | {"len_a": len(annotation.output_a), "len_b": len(annotation.output_b)}


def pick_samples(annotations: list[outputs.Annotation], count: int = 2) -> list[dict]:
    """One judgment A won and one B won where there are (the first of each), else the first ones."""
    won = [next((a for a in annotations if a.winner == side), None) for side in ("a", "b")]
    chosen = [a for a in won if a is not None]
    chosen += [a for a in annotations if a not in chosen][: count - len(chosen)]
    keys = {"seed", "prompt_id", "instruction", "output_a", "output_b", "winner"}
    return [{k: _cut(v) for k, v in a.model_dump(include=keys).items()} for a in chosen[:count]]


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > SAMPLE_CHARS:
        return value[:SAMPLE_CHARS].rstrip() + " [...]"
    return value


def git_commit() -> str | None:
    """The project's commit: LIMIT_GIT_COMMIT (set in images), else the checkout's HEAD, else unknown."""
    if os.environ.get("LIMIT_GIT_COMMIT"):
        return os.environ["LIMIT_GIT_COMMIT"]
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None
