"""`make bench-contamination`: the contamination check over the 29 v0 gauntlet files in ../shared and the
judge's 600 test prompts, against a 60k-row training set (the authors' released responses, cycled, each row
numbered so no two are alike). Times building the evaluation indexes (once per set) and checking the rows.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from limit.cpu import available_cpus
from limit.data.contamination import Words, check, index, item_text
from limit.gauntlet.benchmarks import suite

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def training_rows(count: int) -> list[str]:
    released = sorted((SHARED / "limit_release").glob("*_models/*_prompts/*.json"))
    texts = [r.get("output_1") or "" for f in released for r in json.loads(f.read_text())]  # responses, not prompts
    return [f"{texts[i % len(texts)]} (row {i})" for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/contamination.json"))
    args = parser.parse_args()
    rows = training_rows(args.rows)
    words = Words()
    started = time.perf_counter()
    files = [SHARED / "gauntlet_data" / b.file for b in suite("v0")]
    files = [f for f in files if f.exists()]  # 29 of the 33 are in ../shared
    eval_sets = {
        f.stem: index((item_text(json.loads(line)) for line in f.read_text().split("\n") if line.strip()), words)
        for f in files
    }
    prompts = (SHARED / "limit_release" / "test_prompts").glob("*.txt")
    eval_sets["judge prompts"] = index(
        [p for f in prompts for p in f.read_text().split("Below is an instruction") if p.strip()], words
    )
    indexed = time.perf_counter()
    table, hit = check(rows, eval_sets, words)
    checked = time.perf_counter()
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {available_cpus()} CPUs",
        "eval_sets": len(eval_sets),
        "eval_ngrams": int(sum(len(v) for v in eval_sets.values())),
        "training_rows": len(rows),
        "index_seconds": round(indexed - started, 2),
        "check_seconds": round(checked - indexed, 2),
        "total_seconds": round(checked - started, 2),
        "contaminated_rows": int(hit.sum()),
        "worst": sorted(((v["rows"], k) for k, v in table.items() if k != "any"), reverse=True)[:5],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
