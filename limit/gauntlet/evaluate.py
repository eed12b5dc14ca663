"""Score one model on a set of gauntlet benchmarks with lm-eval as the engine.

lm-eval builds the prompts (our task configs), batches the requests and runs the model; from its logged
per-request log-likelihoods we compute composer's metrics (`scoring`). The answer token counts that the
mean-per-token rule needs come from the same lm-eval model's `_encode_pair`, i.e. exactly the tokens it
scored.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from limit.errors import LimitError
from limit.execution import outputs
from limit.gauntlet import scoring
from limit.gauntlet.benchmarks import Benchmark
from limit.gauntlet.fewshot import read_rows
from limit.gauntlet.tasks import REQUIRED_FIELDS, prepare_docs, task_config
from limit.models.base import Pretrained, loading
from limit.models.vllm import require_supported
from limit.spec.study import GauntletSpec

TASK_PREFIX = "gauntlet_"
BACKENDS = ("hf", "packed", "vllm")


def load_model(model: Pretrained | str, spec: GauntletSpec | None = None):
    """An lm-eval model as `spec` asks for it: `hf` (lm-eval's HFLM), `packed` (HFLM scoring packed,
    context-shared rows; MPT and the RoPE families) or `vllm` when it is installed. `spec.max_length` (lm-eval's:
    contexts are left-truncated to it) is the model's own when None."""
    import torch

    model, spec = Pretrained.of(model), spec or GauntletSpec()
    location, backend, batch_size, max_length = model.location, spec.backend, spec.batch_size, spec.max_length
    trust_remote_code, revision = model.trust_remote_code, model.revision
    if backend in ("hf", "packed"):
        from lm_eval.models.huggingface import HFLM

        from limit.gauntlet.packed import PackedLM

        args = {
            "pretrained": location,
            "batch_size": batch_size,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "dtype": "auto",
            "trust_remote_code": trust_remote_code,
            "revision": revision or "main",
        } | ({"max_length": max_length} if max_length else {})
        with loading(location):
            if backend == "hf":
                return HFLM(**args)
            return PackedLM(**args, batch_tokens=spec.batch_tokens, attention=spec.attention)
    if backend == "vllm":
        require_supported(location, "gauntlet.backend", revision)
        try:
            from lm_eval.models.vllm_causallms import VLLM
        except ImportError as e:
            raise LimitError(f"gauntlet.backend: vllm is not installed ({e})") from None
        # Prompts of one benchmark share long few-shot prefixes. vLLM's V1 engine (its default there) skips cache
        # reads for prompt-logprob requests, i.e. lm-eval's log-likelihoods: generation gains, scoring does not.
        return VLLM(
            pretrained=location,
            batch_size=batch_size,
            trust_remote_code=trust_remote_code,
            revision=revision,
            enable_prefix_caching=True,
            **({"max_length": max_length} if max_length else {}),
        )
    raise LimitError(f"gauntlet.backend: unknown backend '{backend}' (known: {', '.join(BACKENDS)})")


def build_tasks(benchmarks: Sequence[Benchmark], files: dict[str, Path], seed: int) -> dict[str, dict]:
    """lm-eval task configs, by benchmark name, for the benchmarks whose file is present."""
    configs = {}
    for bench in benchmarks:
        if bench.file not in files:
            continue
        rows = read_rows(files[bench.file], REQUIRED_FIELDS[bench.kind])
        configs[bench.name] = task_config(bench, prepare_docs(bench, rows, seed), TASK_PREFIX + bench.name)
    return configs


def score_samples(bench: Benchmark, samples: list[dict], lm) -> tuple[dict, list[dict]]:
    """Composer's metric for each logged lm-eval sample, then the benchmark's (rescaled) result."""
    correct, groups, details = [], [], []
    for sample in sorted(samples, key=lambda s: s["doc_id"]):
        doc = sample["doc"]
        responses = sample["filtered_resps"]  # one (loglikelihood, is_greedy) per request
        logliks = [float(ll) for ll, _ in responses]
        if bench.kind == "language_modeling":
            ok = bool(responses[0][1])
            detail = {"row": doc["_row"], "correct": ok, "loglik": logliks[0]}
        else:
            n_tokens = [len(lm._encode_pair(ctx, cont)[1]) for ctx, cont in sample["arguments"]]
            pick = scoring.mean_per_token_choice(logliks, n_tokens)
            ok = pick == doc["gold"]
            detail = {
                "row": doc["_row"],
                "correct": ok,
                "prediction": pick,
                "gold": doc["gold"],
                "logliks": logliks,
                "tokens": n_tokens,
            }
        correct.append(ok)
        groups.append(str(doc.get(bench.macro_average or "", "")))
        details.append(detail)
    result = scoring.benchmark_result(bench, correct, groups if bench.macro_average else None)
    return result, details


def evaluate_benchmark(lm, bench: Benchmark, path: Path, *, limit: int | None, seed: int) -> tuple[dict, list]:
    """One benchmark through lm-eval's evaluator; returns its result and per-row details."""
    from lm_eval.evaluator import evaluate
    from lm_eval.tasks import TaskManager

    config = build_tasks([bench], {bench.file: path}, seed)[bench.name]
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    # lm-eval's evaluator proper; `simple_evaluate` would add a `pip list` environment report per call.
    # Our tasks are config dicts, so the TaskManager need not index lm-eval's built-in task files.
    tasks = TaskManager(include_defaults=False).load([config])
    out = evaluate(lm=lm, task_dict=tasks, limit=limit, log_samples=True, bootstrap_iters=0)
    return score_samples(bench, out["samples"][config["task"]], lm)


def run_gauntlet(
    model: Pretrained | str,
    benchmarks: Sequence[Benchmark],
    files: dict[str, Path],
    spec: GauntletSpec | None = None,
    *,
    resume_dir: Path | None = None,
    on_benchmark: Callable[[str, int, int], None] | None = None,
    lm=None,
) -> dict[str, Any]:
    """Evaluate `model` as `spec` says (backend, batches, row limit, few-shot seed) and return scores.json's
    content (without details).

    `files` maps each benchmark's relative file name to a local path (see `data.fetch_files`); a benchmark
    without one is missing and leaves its category incomplete. With `resume_dir`, each finished benchmark
    is kept there as `<name>.json` (result and per-row details) and reused by a later attempt;
    `on_benchmark(name, done, total)` is called after each one is written (to persist it, to report progress).
    `lm`: an already loaded lm-eval model to use instead of loading `model`.
    """
    spec = spec or GauntletSpec()
    missing = [b.name for b in benchmarks if b.file not in files]
    if missing:
        print(f"gauntlet: no data for {', '.join(missing)} (their categories will be incomplete)", file=sys.stderr)
    started = time.time()
    results: dict[str, dict] = {}
    for bench in benchmarks:
        if bench.file not in files:
            continue
        saved = resume_dir / f"{bench.name}.json" if resume_dir else None
        if saved is not None and saved.is_file():
            results[bench.name] = _reuse(saved, bench.name)
            continue
        if lm is None:
            lm = load_model(model, spec)
        t0 = time.time()
        result, details = evaluate_benchmark(lm, bench, files[bench.file], limit=spec.limit, seed=spec.seed)
        result["seconds"] = round(time.time() - t0, 3)
        results[bench.name] = result
        spread = f" ± {result['stderr']:.4f}" if result.get("stderr") is not None else ""
        score = f"accuracy {result['accuracy']:.4f}{spread} score {result['score']:+.4f}"
        print(f"gauntlet: {bench.name}: {score} (n={result['n']}, {result['seconds']:.1f}s)", file=sys.stderr)
        if saved is not None:
            _keep(saved, result, details)
        if on_benchmark:
            on_benchmark(bench.name, len(results), len(benchmarks) - len(missing))
    summary = scoring.aggregate(benchmarks, results)
    return {
        "benchmarks": results,
        **summary,
        "seconds": round(time.time() - started, 3),
        "examples": sum(r["n"] for r in results.values()),
    }


def _reuse(saved: Path, name: str) -> dict:
    print(f"gauntlet: {name}: reusing {saved}", file=sys.stderr)
    return outputs.read(saved, outputs.Details).result


def _keep(saved: Path, result: dict, details: list) -> None:
    """A finished benchmark, written whole (staged, then renamed): a retry reuses it."""
    saved.parent.mkdir(parents=True, exist_ok=True)
    partial = saved.with_suffix(".partial")
    partial.write_text(json.dumps({"result": result, "details": details}))
    partial.replace(saved)


def score_model(
    model: Pretrained,
    spec: GauntletSpec,
    workdir: Path,
    *,
    resume_dir: Path | None = None,
    on_benchmark: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """One model on the gauntlet as a study's `gauntlet:` configures it: scores.json's content.

    The gauntlet step and `limit gauntlet` both call this, so the two score alike.
    """
    from limit.gauntlet.benchmarks import suite
    from limit.gauntlet.data import fetch_files

    benchmarks = suite(spec.suite, spec.tasks)
    files = fetch_files(spec.locations, [b.file for b in benchmarks], workdir)
    if not files:
        raise LimitError(f"gauntlet.data: none of suite '{spec.suite}''s files found in {spec.data}")
    print(f"gauntlet: {len(benchmarks)} benchmarks of suite '{spec.suite}' on {model.location}", file=sys.stderr)
    scores = run_gauntlet(model, benchmarks, files, spec, resume_dir=resume_dir, on_benchmark=on_benchmark)
    return scores | {"suite": spec.suite}
