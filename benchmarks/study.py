"""`make bench`: run the tiny study from scratch and write wall time per step and finetune tokens/s as JSON."""

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

    with tempfile.TemporaryDirectory(prefix="limit-bench-") as tmp:
        workdir = Path(tmp) / "runs"
        timings = Path(tmp) / "timings.json"
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
        env.pop("LIMIT_ARTIFACTS", None)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        started = time.time()
        cmd = [
            sys.executable,
            "-m",
            "limit.cli",
            "run",
            args.study,
            "--workdir",
            str(workdir),
            "--timings",
            str(timings),
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.time() - started
        if proc.returncode != 0:
            print(proc.stdout[-4000:], proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        outcome = json.loads(timings.read_text())
        store = Store.open(str(workdir / "artifacts"), workdir)
        plan = build_plan(load_study(args.study))
        steps = []
        for step in plan.order():
            summary = store.manifest(step.ref)["summary"]
            row = {"id": step.id, "kind": step.kind, "seconds": outcome["seconds"].get(step.id)}
            if step.kind == "finetune":
                row["tokens_per_second"] = summary.get("tokens_per_second")
                row["train_tokens"] = summary.get("train_tokens")
            steps.append(row)

    result = {
        "study": args.study,
        "wall_seconds": round(wall, 2),
        "target_seconds": 300,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "seconds_by_kind": {
            kind: round(sum(s["seconds"] or 0 for s in steps if s["kind"] == kind), 2)
            for kind in dict.fromkeys(s["kind"] for s in steps)
        },
        "steps": steps,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("study", "wall_seconds", "seconds_by_kind")}, indent=2))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
