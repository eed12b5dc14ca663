"""`make bench-ranks`: time per optimizer step of the tiny finetune, one process against 2 CPU processes
standing in for 2 GPUs (`train.cpu_processes`), under DeepSpeed ZeRO-2 and ZeRO-3.

Each mode is a real `limit step finetune` (relaunched under torchrun for cpu_processes) on the tiny MPT and
the tiny study's instruct-v1 rows (48, 8 a step: micro-batches of 2), 3 epochs (18 steps). Every mode gets
the same CPU threads in total (2 ranks share them). A step's time is read from Trainer's own log (cumulative
train_runtime, per step); the first step of each run is left out (warm-up). Ratios are against the one
process run of the same ZeRO stage (`cpu_processes: 1`, DeepSpeed too), in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from limit.cpu import available_cpus
from limit.plan import build_plan
from limit.spec.study import STUDIES_DIR, TrainSpec, load_study
from limit.steps import step_key

MODES = {  # name: train fields
    "one_process": {},
    "zero2_1": {"cpu_processes": 1, "zero_stage": 2},
    "zero2_2": {"cpu_processes": 2, "zero_stage": 2},
    "zero3_1": {"cpu_processes": 1, "zero_stage": 3},
    "zero3_2": {"cpu_processes": 2, "zero_stage": 3},
}


def study(folder: Path) -> Path:
    data = yaml.safe_load((STUDIES_DIR / "tiny.yaml").read_text())
    data.update(name="bench-ranks", baselines=[], pairs=[], prompts={})
    data["runs"] = [{"name": "ranks", "model": "tiny-mpt", "dataset": "instruct-v1"}]
    data["training"]["defaults"].update(micro_batch_size=2, epochs=3)
    path = folder / "bench-ranks.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def step(kind: str, inp, env: dict[str, str]) -> float:
    argv = [sys.executable, "-m", "limit.cli", "step", kind, "--input", inp.model_dump_json()]
    started = time.time()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"bench-ranks: {kind} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.time() - started


def step_seconds(folder: Path) -> list[float]:
    log = json.loads((folder / "train_log.json").read_text())["log_history"]
    runtime = [entry["train_runtime"] for entry in log if "loss" in entry]
    return [b - a for a, b in zip(runtime, runtime[1:], strict=False)]


def measure(root: Path, threads: int) -> dict:
    plan = build_plan(load_study(str(study(root))))
    prepare, finetune = plan.steps["prepare-instruct-v1"], plan.steps["finetune-ranks"]
    env = {
        **os.environ,
        "LIMIT_WORKDIR": str(root),
        "LIMIT_ARTIFACTS": str(root / "artifacts"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "OMP_NUM_THREADS": str(threads),
    }
    step("prepare", prepare.input, env)
    results = {}
    for mode, fields in MODES.items():
        train = TrainSpec.model_validate({**finetune.input.train.model_dump(), **fields})
        inp = finetune.input.model_copy(update={"train": train})
        wall = step("finetune", inp, env)
        seconds = step_seconds(root / "artifacts" / f"finetune/{step_key('finetune', inp)}")
        results[mode] = {
            "processes": fields.get("cpu_processes", 1),
            "zero_stage": fields.get("zero_stage"),
            "seconds_per_step": round(statistics.median(seconds), 5),
            "steps_timed": len(seconds),
            "step_wall_s": round(wall, 1),
        }
    for stage in (2, 3):
        base = results[f"zero{stage}_1"]["seconds_per_step"]
        for processes in (1, 2):
            entry = results[f"zero{stage}_{processes}"]
            entry["vs_one_process_same_stage"] = round(entry["seconds_per_step"] / base, 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/ranks.json"))
    parser.add_argument("--threads", type=int, default=available_cpus(), help="CPU threads per mode, in total")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        modes = measure(Path(tmp), args.threads)
    report = {
        "machine": {"platform": platform.platform(), "cpus": available_cpus(), "threads": args.threads},
        "modes": modes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
