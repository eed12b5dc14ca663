"""`limit check-gpu`: the stages of limit/gpucheck, each in its own process and time limit, results appended
to one JSON after each stage, a table at the end. Exit 0 when every stage passed, 1 otherwise."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from limit.errors import LimitError

SMOKE_LIMIT_S = 240  # a CPU machine runs the smoke stages, not the GPU's shapes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from limit.gpucheck import NAMES

    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--smoke", action="store_true", help="Tiny shapes: the stages' plumbing on any machine.")
    parser.add_argument("--stages", default=",".join(NAMES), help=f"Comma-separated (default: {','.join(NAMES)}).")
    parser.add_argument("--out", default="runs/check-gpu/check-gpu.json", help="The results JSON.")
    parser.add_argument("--budget-s", type=float, default=420, help="All stages together (default: 7 minutes).")
    parser.add_argument("--gauntlet-data", help="v0 gauntlet files for the gauntlet stage (default: the tiny suite).")


def main(args: argparse.Namespace) -> int:
    from limit.execution.io import check_output
    from limit.gpucheck import STAGES

    chosen = args.stages.split(",")
    stages = [s for s in STAGES if s.name in chosen]
    if unknown := set(chosen) - {s.name for s in stages}:
        raise LimitError(f"--stages: unknown stage '{sorted(unknown)[0]}' (known: {', '.join(s.name for s in STAGES)})")
    if args.device == "cuda" and not _cuda():
        raise LimitError("--device cuda: no GPU is visible here (use --smoke --device cpu to check the plumbing)")
    out = Path(args.out)
    check_output(out, "--out")
    root = out.parent / "work"
    report = {"device": args.device, "smoke": args.smoke, "started": time.time(), "stages": {}}
    deadline = time.time() + args.budget_s
    for stage in stages:
        limit_s = min(SMOKE_LIMIT_S if args.smoke else stage.limit_s, max(0.0, deadline - time.time()))
        report["stages"][stage.name] = run_stage(stage.name, limit_s, args, root)
        _write(out, report)
        print(row(stage.name, report["stages"][stage.name]), flush=True)
    print(f"wrote {out}")
    return 0 if all(r.get("ok") for r in report["stages"].values()) else 1


def run_stage(name: str, limit_s: float, args: argparse.Namespace, root: Path) -> dict:
    if limit_s <= 0:
        return {"ok": False, "error": "not run: the command's --budget-s was spent"}
    work = root / name
    work.mkdir(parents=True, exist_ok=True)
    result_file, log = work / "result.json", work / "stage.log"
    result_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "limit.gpucheck", name, "--device", args.device, "--workdir", str(work)]
    argv += ["--out", str(result_file), *(["--smoke"] if args.smoke else [])]
    argv += ["--gauntlet-data", args.gauntlet_data] if args.gauntlet_data else []
    started = time.time()
    with open(log, "w") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            _kill(process)
            code = None
    result = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if code is None:
        result |= {"ok": False, "error": f"stopped at its {limit_s:.0f} s limit (what it measured is kept)"}
    elif not result:
        result = {"ok": False, "error": f"exited {code} without a result: {_tail(log)}"}
    return result | {"seconds": round(time.time() - started, 1), "log": str(log)}


def row(name: str, result: dict) -> str:
    verdict = "ok  " if result.get("ok") else "FAIL"
    words = result.get("headline") or result.get("error", "")
    return f"{verdict} {name:<12} {result.get('seconds', 0):6.1f}s  {words}"


def _kill(process: subprocess.Popen) -> None:
    import os
    import signal

    os.killpg(process.pid, signal.SIGKILL)  # the stage and whatever it launched (torchrun, its ranks)
    process.wait()


def _tail(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(lines[-3:])[-500:]


def _write(out: Path, report: dict) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(out)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
