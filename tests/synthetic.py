"""Stored outputs of a whole study, made up (seeded) but shaped exactly as the steps write them: what the report,
`limit status`, `limit report` and `limit export` read, at the paper's scale, without running anything."""

from __future__ import annotations

import json
import random

from limit.execution.io import jsonl_text
from limit.execution.store import Store
from limit.gauntlet.benchmarks import suite
from limit.gauntlet.scoring import aggregate
from limit.plan import Plan, Step


def scores(bench_suite: str, rng: random.Random, level: float, drop: tuple[str, ...] = ()) -> dict:
    benchmarks = suite(bench_suite)
    results = {
        b.name: {"category": b.category, "score": level + rng.uniform(-0.15, 0.15), "accuracy": 0.5, "n": 100}
        for b in benchmarks
        if b.name not in drop
    }
    return {"benchmarks": results, **aggregate(benchmarks, results), "suite": bench_suite, "examples": 100}


def commit(store: Store, step: Step, files: dict[str, str], summary: dict | None = None) -> None:
    out = store.begin(step.ref)
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    manifest = {"kind": step.kind, "key": step.key, "input": step.input.model_dump(mode="json")}
    store.commit(step.ref, out, manifest | {"summary": summary or {}})


def judge_files(rng: random.Random, seeds: int = 3, prompts: int = 300) -> dict[str, str]:
    per_seed = {}
    for seed in range(1, seeds + 1):
        wins = rng.randint(90, 200)
        per_seed[str(seed)] = {"wins_a": wins, "wins_b": prompts - wins - 4, "ties": 3, "failures": 1, "n": prompts}
        per_seed[str(seed)]["win_rate_a"] = wins / (prompts - 4)
    rate = sum(s["win_rate_a"] for s in per_seed.values()) / seeds
    result = {
        "seeds": per_seed,
        "win_rate_a": rate,
        "ci95": [rate - 0.04, rate + 0.04],
        "seed_std": 0.02,
        "lc_win_rate_a": rate - 0.01,
        "lengths": {"a": {"mean": 812.0}, "b": {"mean": 655.0}},
        "cost": {"judge_model": "gpt-4-0613", "tokens": 730.0 * seeds * prompts, "dollars": 0.0219 * seeds * prompts},
    }
    annotations = [
        {
            "seed": "1",
            "prompt_id": str(i),
            "instruction": f"Instruction {i}: explain something in two sentences.",
            "output_a": f"Answer A{i}.\nA second line.",
            "output_b": f"Answer B{i}.",
            "preference": 1.0 if i % 2 else 2.0,
            "winner": "a" if i % 2 else "b",
        }
        for i in range(4)
    ]
    return {"result.json": json.dumps(result), "annotations.jsonl": jsonl_text(annotations)}


def store_study(
    plan: Plan, store: Store, seed: int = 0, skip: tuple[str, ...] = (), incomplete: str | None = None
) -> dict[str, dict]:
    """Every step's outputs but those in `skip` (step ids); `incomplete`: a baseline scored without squad (its
    reading comprehension, hence its average, is n/a). Returns each run's choice.json by run name."""
    rng = random.Random(seed)
    choices: dict[str, dict] = {}
    gauntlet_suite = plan.study.gauntlet.suite
    for step in plan.order():
        if step.id in skip or step.kind in ("prepare", "generate", "report"):
            if step.kind in ("prepare", "generate") and step.id not in skip:
                commit(store, step, {})
            continue
        if step.kind == "finetune":
            tokens = rng.randint(10**6, 10**8)
            commit(store, step, {}, {"train_tokens": tokens * step.input.train.epochs})
        elif step.kind == "gauntlet":
            drop = ("squad",) if step.input.model is not None and step.input.tags["run"] == incomplete else ()
            level = 0.1 if step.input.model is not None else 0.12 + 0.01 * (step.input.epoch or 0)
            commit(store, step, {"scores.json": json.dumps(scores(gauntlet_suite, rng, level, drop))})
        elif step.kind == "select":
            choices[step.input.tags["run"]] = choice = select_choice(store, step)
            commit(store, step, {"choice.json": json.dumps(choice)}, {"chosen_epoch": choice["epoch"]})
        elif step.kind == "judge":
            commit(store, step, judge_files(rng, len(plan.study.generation.seeds)))
        elif step.kind == "calibrate":
            commit(store, step, {"calibration.json": json.dumps({"skipped": "no release in this made-up study"})})
    return choices


def select_choice(store: Store, step: Step) -> dict:
    """The chosen epoch is never the last one, so a last-epoch value cannot pass for the chosen one."""
    epochs = []
    for entry in step.input.epochs:
        stored = json.loads(store.read_text(entry.gauntlet, "scores.json"))
        epochs.append({"epoch": entry.epoch, "average": stored["average"], "categories": stored["categories"]})
    best = max(epochs[:-1] or epochs, key=lambda e: e["average"])
    return {
        "epoch": best["epoch"],
        "finetune": step.input.finetune,
        "sub": f"epoch-{best['epoch']}",
        "average": best["average"],
        "tied": [best["epoch"]],
        "epochs": epochs,
    }
