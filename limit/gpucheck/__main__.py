"""One stage of `limit check-gpu`, in its own process: `python -m limit.gpucheck STAGE --out RESULT.json`."""

from __future__ import annotations

import argparse
import importlib
import traceback
from pathlib import Path

from limit.gpucheck import NAMES
from limit.gpucheck.context import CheckContext


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m limit.gpucheck")
    parser.add_argument("stage", choices=NAMES)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--gauntlet-data")
    args = parser.parse_args()
    ctx = CheckContext(args.device, args.smoke, Path(args.workdir), Path(args.out), args.gauntlet_data)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    try:
        result = importlib.import_module(f"limit.gpucheck.{args.stage}").run(ctx)
    except Exception as e:  # the stage failed: its result says how, and the next stage still runs
        result = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
    ctx.save(result)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
