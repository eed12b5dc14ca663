"""`limit reproduce-winrates`: the paper's win-rate table from the authors' released GPT-4 judgments.

By default the released preferences are counted with the judge step's own arithmetic. With
`--via-replay-judge` every released pair is judged again through the real path (alpaca-eval's annotator, the
`openai` client, position randomization) against a local server that answers as GPT-4 did in the files.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from limit.execution import logs

DEFAULT_RELEASE_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "limit_release"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--release-dir", type=Path, default=DEFAULT_RELEASE_DIR, help="Default: %(default)s")
    parser.add_argument(
        "--via-replay-judge",
        action="store_true",
        help="Re-judge every pair through alpaca-eval + openai against a local replay server.",
    )
    parser.add_argument("--only", default=None, help="Only comparisons whose label contains this text.")
    parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples for the 95%% CI.")
    parser.add_argument("--concurrency", type=int, default=8, help="Parallel requests to the replay judge.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the table as JSON here.")
    parser.add_argument(
        "--log", type=Path, default=Path("runs/logs/reproduce-winrates.log"), help="alpaca-eval's log (%(default)s)"
    )


def main(args: argparse.Namespace) -> int:
    import json

    from limit.judge.release import expected_table, find_comparisons

    comparisons = [c for c in find_comparisons(args.release_dir) if not args.only or args.only in c.label]
    expected = expected_table(args.release_dir)
    replay = _ReplayRun(args.concurrency) if args.via_replay_judge else None
    rows, mismatches = [], 0
    try:
        with logs.to_file(args.log):  # alpaca-eval's noise goes to the log, not the console
            progress = logs.Progress("comparisons", len(comparisons))
            for comp in comparisons:
                row = _compare(comp, replay, expected, args.bootstrap)
                mismatches += row["match"] is False
                rows.append(row)
                if replay:  # the released verdicts alone take no time
                    progress.advance(comp.label)
    finally:
        if replay:
            replay.close()
    if replay:
        print(f"alpaca-eval's log: {args.log}", file=sys.stderr)

    _print_table(rows, via_replay=bool(replay))
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "size": r["comparison"].size,
                        "prompts": r["comparison"].prompts,
                        "a": "LIMA",
                        "b": r["comparison"].b,
                        "paper": r["paper"],
                        "match": r["match"],
                        **r["result"].to_dict(),
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
    if mismatches:
        print(f"{mismatches} win rate(s) differ from SOURCE.md at one decimal", file=sys.stderr)
        return 1
    return 0


def _compare(comp, replay: _ReplayRun | None, expected: dict, bootstrap: int) -> dict:
    """One comparison's win rate, from the released preferences or re-judged, beside the paper's."""
    from limit.judge.release import judgments
    from limit.judge.winrate import summarize

    per_seed, repeated = {}, 0
    for seed in sorted(comp.seed_files, key=int):
        released = comp.rows(seed)
        repeated += len(released) - len({r["instruction"] for r in released})
        per_seed[seed] = replay.judge(released, int(seed)) if replay else judgments(released)
    result = summarize(per_seed, bootstrap=bootstrap, lc=False)
    paper = expected.get((comp.size, comp.prompts, comp.b))
    ours = None if result.win_rate_a is None else round(100 * result.win_rate_a, 1)
    match = None if paper is None else ours == paper
    return {"comparison": comp, "result": result, "paper": paper, "match": match, "repeated": repeated}


def _print_table(rows: list[dict], via_replay: bool) -> None:
    from limit.judge.winrate import percent

    how = "re-judged through alpaca-eval + openai (replay judge)" if via_replay else "counted from the released files"
    print(f"Win rate of the LIMA-finetuned model A (%, ties and failures excluded), {how}")
    print()
    print("| Size | Prompts | A vs B | Per seed | Mean | 95% CI | W/L/T/F | n | SOURCE.md |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        comp, result = row["comparison"], row["result"]
        per_seed = ", ".join(percent(c.win_rate_a) for c in result.seeds.values())
        totals = [sum(getattr(c, k) for c in result.seeds.values()) for k in ("wins_a", "wins_b", "ties", "failures")]
        ci = result.ci95 or [None, None]
        check = "" if row["match"] is None else (" ok" if row["match"] else " DIFFERS")
        paper = "-" if row["paper"] is None else f"{row['paper']:.1f}{check}"
        repeated = f" ({row['repeated']} repeated)" if row["repeated"] else ""
        print(
            f"| {comp.size} | {comp.prompts} | LIMA vs {comp.b} | {per_seed} | {percent(result.win_rate_a)} | "
            f"{percent(ci[0])}-{percent(ci[1])} | {'/'.join(map(str, totals))} | {sum(totals)}{repeated} | {paper} |"
        )
    if any(row["repeated"] for row in rows):
        print("\nn: the judged rows of the released files, each counted, as the paper's numbers count them;")
        print("repeated: rows whose instruction stands earlier in the same seed's file.")


class _ReplayRun:
    """A replay judge server on 127.0.0.1 and the openai judge pointed at it, with a throwaway cache."""

    def __init__(self, concurrency: int):
        from limit.judge.openai_backend import OpenAIJudge
        from limit.judge.replay_server import ReplayJudgeServer
        from limit.spec.study import JudgeSpec

        self.server = ReplayJudgeServer()
        self.server.start()
        self.cache_dir = tempfile.TemporaryDirectory(prefix="limit-replay-")
        spec = JudgeSpec(base_url=self.server.base_url, concurrency=concurrency, max_retries=1, retry_wait=0)
        self.judge_client = OpenAIJudge(spec)
        self.runs = 0

    def judge(self, released: list[dict], seed: int):
        from limit.judge.winrate import Judgment

        self.server.load(released)
        self.runs += 1
        pairs = [(r["instruction"], r["output_1"] or "", r["output_2"] or "") for r in released]
        outcomes = self.judge_client.judge(pairs, seed=seed, cache=Path(self.cache_dir.name) / f"{self.runs}.json")
        return [
            Judgment(prompt_id=instr, preference=o.preference, len_a=len(a), len_b=len(b))
            for (instr, a, b), o in zip(pairs, outcomes, strict=True)
        ]

    def close(self) -> None:
        s = self.server
        print(
            f"replay judge: {s.requests} requests, {s.shown_swapped} shown with B first, "
            f"{s.missing} pairs not in the files, {s.unparsed} unreadable prompts",
            file=sys.stderr,
        )
        s.stop()
        self.cache_dir.cleanup()
