"""`make bench`: run the tiny study from scratch twice, with warm step processes (the local backend's default)
and with a fresh interpreter per step (LIMIT_WARM_STEPS=0, the baseline), one after the other on this machine;
write each run's wall time per step, finetune tokens/s and the ratio as JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from limit.execution.store import Store
from limit.plan import build_plan
from limit.spec.study import load_study


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", default="tiny")
    parser.add_argument("--out", default="runs/bench/study.json")
    args = parser.parse_args()

    runs = {}
    for mode, warm in (("cold", "0"), ("warm", "1")):
        runs[mode] = run_study(args.study, warm)
        if runs[mode] is None:
            return 1
    result = {
        "study": args.study,
        "wall_seconds": {mode: run["wall_seconds"] for mode, run in runs.items()},
        "cold_over_warm": round(runs["cold"]["wall_seconds"] / runs["warm"]["wall_seconds"], 2),
        "target_seconds": 60,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    shown = {mode: {k: run[k] for k in ("wall_seconds", "seconds_by_kind")} for mode, run in runs.items()}
    print(json.dumps({"study": args.study, "cold_over_warm": result["cold_over_warm"], **shown}, indent=2))
    print(f"written to {args.out}")
    return 0


def run_study(study: str, warm: str) -> dict | None:
    """One `limit run` of `study` in a fresh workdir; None (after printing its output) when it failed."""
    with tempfile.TemporaryDirectory(prefix="limit-bench-") as tmp:
        workdir = Path(tmp) / "runs"
        timings = Path(tmp) / "timings.json"
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}", "LIMIT_WARM_STEPS": warm}
        env.pop("LIMIT_ARTIFACTS", None)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        started = time.time()
        cmd = [sys.executable, "-m", "limit.cli", "run", study, "--workdir", str(workdir), "--timings", str(timings)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.time() - started
        if proc.returncode != 0:
            print(proc.stdout[-4000:], proc.stderr[-4000:], file=sys.stderr)
            return None
        outcome = json.loads(timings.read_text())
        store = Store.open(str(workdir / "artifacts"), workdir)
        steps = []
        for step in build_plan(load_study(study)).order():
            summary = store.manifest(step.ref)["summary"]
            row = {"id": step.id, "kind": step.kind, "seconds": outcome["seconds"].get(step.id)}
            if step.kind == "finetune":
                row["tokens_per_second"] = summary.get("tokens_per_second")
                row["train_tokens"] = summary.get("train_tokens")
            steps.append(row)
    by_kind = {
        kind: round(sum(s["seconds"] or 0 for s in steps if s["kind"] == kind), 2)
        for kind in dict.fromkeys(s["kind"] for s in steps)
    }
    return {"wall_seconds": round(wall, 2), "seconds_by_kind": by_kind, "steps": steps}


if __name__ == "__main__":
    sys.exit(main())
