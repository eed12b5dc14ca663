"""`make bench-gauntlet`: Eval Gauntlet v0 on a tiny model (MPT, or `--arch llama`, qwen2, ...: `make
bench-gauntlet ARCH=llama`), wall time and examples/s, as JSON.

Two comparisons, on CPU, with the tiny model loaded once:
- "gauntlet" vs "hflm" (in "packed_vs_hflm"): our path over every v0 file available (../shared/gauntlet_data
  by default; one lm-eval evaluation per benchmark, composer's metrics on top) with the default `packed`
  backend, then with lm-eval's own `HFLM` over the same weights: the same requests, so the speedup, the
  prediction mismatches (must be 0) and the largest log-likelihood difference are reported.
- "lm_eval" vs "gauntlet_same_tasks": for the benchmarks lm-eval also ships as built-in tasks (arc_easy,
  piqa, boolq, ...), lm-eval's own `simple_evaluate` in a single call, against our path on those same
  benchmarks, both with HFLM. lm-eval's built-in task files load their data from the Hugging Face hub, which
  is unreachable here, so both sides run *our* task configs (same prompts, same requests): what differs is
  the driver (one call vs one per benchmark) and the metric (lm-eval's summed-log-likelihood `acc` vs
  composer's mean per token), whose disagreement is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from limit.execution.locations import parse_locations
from limit.gauntlet.agreement import compare, timed_run
from limit.gauntlet.benchmarks import suite
from limit.gauntlet.data import fetch_files
from limit.gauntlet.evaluate import build_tasks, load_model, run_gauntlet, score_samples
from limit.gauntlet.packed import PackedLM
from limit.models.base import materialize_tiny
from limit.spec.study import GauntletSpec, TinyModel

REPO = Path(__file__).resolve().parents[1]
# our benchmark name -> the lm-eval built-in task of the same dataset
LM_EVAL_SHIPPED = {
    "arc_easy": "arc_easy",
    "arc_challenge": "arc_challenge",
    "mmlu": "mmlu",
    "bigbench_misconceptions": "bigbench_misconceptions_multiple_choice",
    "copa": "copa",
    "piqa": "piqa",
    "openbook_qa": "openbookqa",
    "lambada_openai": "lambada_openai",
    "hellaswag": "hellaswag",
    "winograd": "wsc273",
    "winogrande": "winogrande",
    "math_qa": "mathqa",
    "logi_qa": "logiqa",
    "pubmed_qa_labeled": "pubmedqa",
    "boolq": "boolq",
}


def lm_eval_single_call(lm, benches, files, limit: int | None, seed: int) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    configs = build_tasks(benches, files, seed)
    started = time.time()
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(configs.values()),
        limit=limit,
        log_samples=True,
        bootstrap_iters=0,
        task_manager=TaskManager(include_defaults=False),
    )
    seconds = time.time() - started
    per_task = {}
    for bench in benches:
        task = configs[bench.name]["task"]
        ours, details = score_samples(bench, out["samples"][task], lm)
        entry = {"lm_eval_acc": out["results"][task].get("acc,none"), "composer_accuracy": ours["accuracy"]}
        if bench.kind != "language_modeling":
            sum_picks = [max(range(len(d["logliks"])), key=lambda i, d=d: d["logliks"][i]) for d in details]
            entry["choices_differ"] = sum(p != d["prediction"] for p, d in zip(sum_picks, details, strict=True))
        per_task[bench.name] = entry
    examples = sum(len(out["samples"][configs[b.name]["task"]]) for b in benches)
    return {
        "seconds": round(seconds, 3),
        "examples": examples,
        "examples_per_s": round(examples / seconds, 2),
        "tasks": per_task,
    }


def rate(scores: dict) -> dict:
    return {
        "seconds": scores["seconds"],
        "examples": scores["examples"],
        "examples_per_s": round(scores["examples"] / scores["seconds"], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench/gauntlet.json")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "gauntlet_data"))
    parser.add_argument("--limit", type=int, default=20, help="Examples per benchmark; 0 for all.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batch-tokens", type=int, help="packed: tokens per row (default batch size x max length).")
    parser.add_argument("--model", help="Model folder (default: the tiny model of --arch, built in a temp folder).")
    parser.add_argument("--arch", default="mpt", help="The tiny model's family: mpt, llama, mistral, qwen2, qwen3.")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    limit = args.limit or None
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="limit-bench-gauntlet-") as tmp:
        model = args.model or str(materialize_tiny(TinyModel(arch=args.arch), Path(tmp)))
        benches = suite("v0")
        files = fetch_files(parse_locations(args.data_dir), [b.file for b in benches], Path(tmp))
        available = [b for b in benches if b.file in files]
        started = time.time()
        spec = GauntletSpec(backend="hf", batch_size=args.batch_size, limit=limit, seed=args.seed)
        hflm = load_model(model, spec)
        load_seconds = time.time() - started
        packed = PackedLM(
            hflm.model, tokenizer=hflm.tokenizer, batch_size=args.batch_size, batch_tokens=args.batch_tokens
        )
        for lm in (hflm, packed):  # imports and first-call costs, paid before either is timed
            run_gauntlet(model, available[:1], files, spec.model_copy(update={"limit": 2}), lm=lm)
        packed.stats = dict.fromkeys(packed.stats, 0)

        ours, ours_details = timed_run(packed, model, benches, files, spec, Path(tmp) / "packed")
        theirs_all, theirs_details = timed_run(hflm, model, benches, files, spec, Path(tmp) / "hflm")
        shared_tasks = [b for b in available if b.name in LM_EVAL_SHIPPED]
        ours_same = run_gauntlet(model, shared_tasks, files, spec, lm=hflm)
        theirs = lm_eval_single_call(hflm, shared_tasks, files, limit, args.seed)

    report = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "model": f"tiny {args.arch} (limit.models.base, TinyModel's defaults)" if not args.model else args.model,
        "data": args.data_dir,
        "limit_per_benchmark": limit,
        "batch_size": args.batch_size,
        "batch_tokens": packed.batch_tokens,
        "model_load_seconds": round(load_seconds, 3),
        "gauntlet": {
            **rate(ours),
            "backend": "packed",
            "benchmarks": len(ours["benchmarks"]),
            "missing": ours["missing"],
            "average": ours["average"],
            "categories": ours["categories"],
            "seconds_per_benchmark": {n: r["seconds"] for n, r in ours["benchmarks"].items()},
        },
        "packed_vs_hflm": {
            "packed": {**rate(ours), **packed.stats},
            "hflm": rate(theirs_all),
            "speedup_vs_lm_eval": round(theirs_all["seconds"] / ours["seconds"], 2),
            "loglikelihood_seconds": {
                "packed": ours["loglikelihood_seconds"],
                "hflm": theirs_all["loglikelihood_seconds"],
            },
            "loglikelihood_speedup": round(theirs_all["loglikelihood_seconds"] / ours["loglikelihood_seconds"], 2),
            **compare(ours_details, theirs_details),
            "same_average": ours["average"] == theirs_all["average"],
            "hflm_seconds_per_benchmark": {n: r["seconds"] for n, r in theirs_all["benchmarks"].items()},
        },
        "compared_tasks": {b.name: LM_EVAL_SHIPPED[b.name] for b in shared_tasks},
        "gauntlet_same_tasks": rate(ours_same),
        "lm_eval": theirs,
        "what_is_compared": (
            "packed_vs_hflm = our per-benchmark path with the packed backend vs with lm-eval's HFLM, same weights, "
            "same requests. lm_eval = lm_eval.simple_evaluate in one call over our task configs for the "
            "benchmarks lm-eval also ships (its built-in YAMLs need the HF hub); gauntlet_same_tasks = our "
            "per-benchmark path on the same configs, both with HFLM. lm_eval_acc sums log-likelihoods, "
            "composer_accuracy averages per token."
        ),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    summary = {k: v for k, v in report["packed_vs_hflm"].items() if k != "hflm_seconds_per_benchmark"}
    print(json.dumps({"packed_vs_hflm": summary, "gauntlet_same_tasks": report["gauntlet_same_tasks"]}, indent=2))
    print(f"lm_eval single call: {theirs['seconds']}s, {theirs['examples_per_s']} examples/s")
    print(f"wrote {out}", file=sys.stderr)
    return 0 if report["packed_vs_hflm"]["prediction_mismatches"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
