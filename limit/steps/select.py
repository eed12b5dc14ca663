"""select step: a finetune's best epoch by gauntlet average (ties go to the earliest epoch).

With `split_seed` (gauntlet.selection_split) the epoch is chosen on a seeded half of every benchmark's rows
and `choice.json`'s `split` holds every epoch's average on both halves, the chosen epoch's optimism (its
choosing-half minus its held-out average) and its rank on the held-out half; without it (the paper's way)
the epoch is chosen on all rows, the same rows it is reported on.

Writes `choice.json`: {epoch, finetune, sub: "epoch-N", average, tied, epochs: [{epoch, average, categories}]},
which the generate step and the report read (`tied`: every epoch sharing the best average).
With `keep: selected` the other epochs' weights are then deleted from the finetune's outputs (their gauntlet
scores stay): a 30B epoch is ~60 GB.
An epoch whose average is null (an incomplete category) cannot be chosen; if none has one, the step fails.
MLflow: the chosen epoch's scores under the keys gauntlet runs use (`gauntlet.average`, `gauntlet.<category>`,
`gauntlet.<benchmark>`) and `chosen_epoch`, each logged once; the per-epoch curves as `per_epoch.gauntlet.*`
histories with step=epoch, so no last-epoch value ever sits where the chosen one is read.
"""

from __future__ import annotations

import math
import sys

import mlflow

from limit.errors import LimitError
from limit.execution import outputs
from limit.execution.context import StepContext
from limit.execution.outputs import ScoredEpoch
from limit.gauntlet.benchmarks import Benchmark, suite
from limit.gauntlet.scoring import average_variance, check_asked, metrics
from limit.gauntlet.split import half_average, halves
from limit.steps.inputs import SelectInput


def best_epoch(epochs: list[ScoredEpoch]) -> ScoredEpoch:
    """The epoch with the highest average; the earliest among equals. Epochs without an average lose."""
    scored = [e for e in epochs if e.average is not None]
    if not scored:
        raise LimitError("select: no epoch has a complete gauntlet average (a category is incomplete)")
    return max(sorted(scored, key=lambda e: e.epoch), key=lambda e: e.average)


def row_scores(ctx: StepContext, gauntlet: str) -> dict[str, dict[int, float]]:
    """Per benchmark, each scored row's correctness (1/0), from a gauntlet step's details."""
    folder = ctx.fetch(gauntlet, "details")
    return {path.stem: outputs.read(path, outputs.Details).correctness() for path in sorted(folder.glob("*.json"))}


def selection_error(inp: SelectInput, ctx: StepContext, epochs: list[ScoredEpoch], best: ScoredEpoch) -> dict | None:
    """How sure the choice is: the chosen average's standard error over the scored rows, and whether the
    runner-up differs from it beyond noise (a paired difference on the same rows, 95%)."""
    scored = [e for e in epochs if e.average is not None]
    gauntlets = {e.epoch: e.gauntlet for e in inp.epochs}
    rows = {e.epoch: row_scores(ctx, gauntlets[e.epoch]) for e in scored}
    benches = [b for b in suite_of(ctx, gauntlets[best.epoch]) if b.name in rows[best.epoch]]
    if not benches:
        return None  # no per-row details (scores only): nothing to estimate the error from
    chosen = rows[best.epoch]
    variance = average_variance(benches, {name: list(r.values()) for name, r in chosen.items()})
    if variance is None:
        return None
    out = {"standard_error": math.sqrt(variance), "runner_up": None}
    others = sorted((e for e in scored if e.epoch != best.epoch), key=lambda e: -e.average)
    if others:
        second = others[0]
        diffs = {
            name: [r[i] - rows[second.epoch][name][i] for i in r if i in rows[second.epoch].get(name, {})]
            for name, r in chosen.items()
        }
        diff_var = average_variance(benches, diffs)
        difference = best.average - second.average
        out |= {"runner_up": second.epoch, "difference": difference}
        if diff_var is not None:
            se = math.sqrt(diff_var)
            out |= {"difference_standard_error": se, "distinguishable": difference > 1.96 * se}
    return out


def split_selection(inp: SelectInput, ctx: StepContext, epochs: list[ScoredEpoch]) -> dict | None:
    """Every epoch's average on the choosing half and on the held-out half of the rows all epochs scored
    (`limit.gauntlet.split`); None without per-row details."""
    gauntlets = {e.epoch: e.gauntlet for e in inp.epochs}
    rows = {e.epoch: row_scores(ctx, gauntlets[e.epoch]) for e in epochs}
    names = set.intersection(*(set(r) for r in rows.values()))
    if not names:
        return None
    shared = {n: set.intersection(*(set(r[n]) for r in rows.values())) for n in sorted(names)}
    drawn = halves(shared, inp.split_seed)
    benches = [b for b in suite_of(ctx, gauntlets[epochs[0].epoch]) if b.name in names]
    sides = {side: {n: h[i] for n, h in drawn.items()} for i, side in enumerate(("selection", "held_out"))}
    return {
        "seed": inp.split_seed,
        "rows": {side: sum(len(ids) for ids in chosen.values()) for side, chosen in sides.items()},
        "epochs": [
            {"epoch": e, **{side: half_average(benches, rows[e], ids) for side, ids in sides.items()}} for e in rows
        ],
    }


def chosen_on_split(split: dict) -> dict:
    """The epoch the choosing half picks, its average on both halves (their difference: the optimism of
    choosing and reporting on the same rows) and its rank among the epochs on the held-out half (1: best)."""
    best = best_epoch([ScoredEpoch(epoch=e["epoch"], average=e["selection"]) for e in split["epochs"]])
    chosen = next(e for e in split["epochs"] if e["epoch"] == best.epoch)
    held = chosen["held_out"]
    rank = (
        None if held is None else 1 + sum(e["held_out"] is not None and e["held_out"] > held for e in split["epochs"])
    )
    optimism = None if held is None else chosen["selection"] - held
    return split | {"chosen": chosen["epoch"], "optimism": optimism, "held_out_rank": rank}


def suite_of(ctx: StepContext, gauntlet: str) -> list[Benchmark]:
    return suite(scores_of(ctx, gauntlet).suite)


def scores_of(ctx: StepContext, gauntlet: str) -> outputs.Scores:
    """A gauntlet step's scores, refused unless they account for every benchmark it was asked for."""
    scores = outputs.read(ctx.fetch(gauntlet) / "scores.json", outputs.Scores)
    step_input = (ctx.store.manifest(gauntlet) or {}).get("input")
    return check_asked(scores, step_input, f"{ctx.store.url(gauntlet)}/scores.json")


def select(inp: SelectInput, ctx: StepContext) -> dict:
    if not inp.epochs:
        raise LimitError("step select --input: epochs: empty")
    epochs, scores_by_epoch = [], {}
    for entry in sorted(inp.epochs, key=lambda e: e.epoch):
        scores = scores_by_epoch[entry.epoch] = scores_of(ctx, entry.gauntlet)
        epochs.append(ScoredEpoch(epoch=entry.epoch, average=scores.average, categories=scores.categories))

    split = split_selection(inp, ctx, epochs) if inp.split_seed is not None else None
    split = chosen_on_split(split) if split is not None else None
    best = best_epoch(epochs) if split is None else next(e for e in epochs if e.epoch == split["chosen"])
    tied = [e.epoch for e in epochs if e.average == best.average]
    if len(tied) > 1 and split is None:
        print(f"select: epochs {tied} tie at average {best.average:.4f}; taking the earliest", file=sys.stderr)
    choice = outputs.Choice(
        epoch=best.epoch,
        finetune=inp.finetune,
        sub=f"epoch-{best.epoch}",
        average=best.average,
        tied=tied,
        epochs=epochs,
        selection=selection_error(inp, ctx, epochs, best),
        split=split,
    )
    (ctx.out / "choice.json").write_text(choice.model_dump_json(indent=2))

    log_epochs(scores_by_epoch, best.epoch)
    if inp.keep == "selected":
        _prune_others(inp, ctx, epochs, best.epoch)
    print(f"select: epoch {best.epoch} (average {best.average:.4f})", file=sys.stderr)
    out = {"chosen_epoch": best.epoch, "gauntlet.average": best.average, "ties": len(tied)}
    if split is not None:
        out |= {"selection.optimism": split["optimism"], "selection.held_out_rank": split["held_out_rank"]}
    return out


def _prune_others(inp: SelectInput, ctx: StepContext, epochs: list[ScoredEpoch], chosen: int) -> None:
    """Delete the unchosen epochs' weights, only of a finetune planned for this choice (`pruned_by`): a
    finetune planned with keep: all is shared by plans that score its epochs otherwise."""
    finetune = ctx.store.manifest(inp.finetune) or {}
    if not (finetune.get("input") or {}).get("pruned_by"):
        print(f"select: {inp.finetune} was not planned with keep: selected: every epoch stays", file=sys.stderr)
        return
    others = [f"epoch-{e.epoch}" for e in epochs if e.epoch != chosen]
    ctx.store.prune(inp.finetune, others, f"training.keep: selected; {ctx.ref} chose epoch {chosen}")
    print(f"select: deleted the weights of {', '.join(others) or 'no other epoch'}", file=sys.stderr)


def log_epochs(scores_by_epoch: dict[int, outputs.Scores], chosen: int) -> None:
    """The chosen epoch's values once (step = that epoch), every epoch's average and categories as curves."""
    for epoch, scores in scores_by_epoch.items():
        curve = {k: v for k, v in metrics(scores).items() if k.startswith("gauntlet.")}  # average, categories
        mlflow.log_metrics({f"per_epoch.{k}": v for k, v in curve.items()}, step=epoch)
    mlflow.log_metrics({**metrics(scores_by_epoch[chosen]), "chosen_epoch": chosen}, step=chosen)
    mlflow.set_tag("chosen_epoch", str(chosen))
