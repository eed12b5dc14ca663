"""Progress of a running step, as one structured line in its log: `progress: {"what": ..., ...}`.

A step (or the library doing its work) calls `emit`; the line lands in the step's log, where the local
backend's heartbeat finds the latest one, and listeners in the same process (the runner's attempt record,
which `limit status` reads) get the fields. Outside a step nobody listens and `emit` is silent, so commands
such as `limit judge-pair` keep their console clean. `describe` is the one place that turns fields into words.

Fields by `what`: train (epoch, epochs, step, steps, loss, tokens_per_second, eta_s); gauntlet (benchmark,
done, total); generate (seed, seeds_done, seeds, prompts_done, prompts); judge (seed, judged, total, failures).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable

PREFIX = "progress: "
_listeners: list[Callable[[dict], None]] = []


def emit(what: str, **fields) -> None:
    """Print one progress line to stderr (the step's log) and tell this process's listeners, if any."""
    if not _listeners:
        return
    record = {"what": what, **fields}
    print(PREFIX + json.dumps(record, separators=(",", ":")), file=sys.stderr, flush=True)
    for listener in list(_listeners):
        listener(record)


def listen(listener: Callable[[dict], None]) -> None:
    _listeners.append(listener)


def unlisten(listener: Callable[[dict], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def latest(lines: Iterable[str]) -> dict | None:
    """The last progress record among `lines` (a log's tail), or None."""
    found = None
    for line in lines:
        start = line.find(PREFIX)
        if start < 0:
            continue
        try:
            record = json.loads(line[start + len(PREFIX) :])
        except json.JSONDecodeError:
            continue  # a line cut by the tail's start, or interleaved output
        if isinstance(record, dict) and "what" in record:
            found = record
    return found


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def describe(record: dict) -> str:
    """One human line, e.g. "epoch 2/10, step 1,204/12,350, loss 1.234, 48,211 tokens/s, ETA 3:12:05"."""
    what = record.get("what")
    if what == "train":
        parts = [
            f"epoch {record.get('epoch', 0):.2f}/{record.get('epochs', '?')}",
            f"step {record.get('step', 0):,}/{record.get('steps', 0):,}",
        ]
        if record.get("loss") is not None:
            parts.append(f"loss {record['loss']:.4f}")
        if record.get("tokens_per_second"):
            parts.append(f"{record['tokens_per_second']:,.0f} tokens/s")
        parts.append(f"ETA {duration(record.get('eta_s'))}")
        return ", ".join(parts)
    if what == "probe":
        planned_eta = f" (planned {duration(record['planned_eta_s'])})" if record.get("planned_eta_s") else ""
        mfu = f", MFU {record['mfu']:.1%}" if record.get("mfu") is not None else ""
        return (
            f"largest micro-batch {record['tokens']:,} tokens: {record['peak_gib']:.2f} GiB measured (planned "
            f"{record['planned_gib']:.2f}) of {record['capacity_gib']:.2f}; {record['tokens_per_second']:,.0f} "
            f"tokens/s{mfu}, ETA {duration(record.get('eta_s'))}{planned_eta}"
        )
    if what == "gauntlet":
        return f"benchmark {record.get('done', 0)}/{record.get('total', '?')} done ({record.get('benchmark', '')})"
    if what == "generate":
        return (
            f"seed {record.get('seed')} ({record.get('seeds_done', 0)}/{record.get('seeds', '?')} seeds done), "
            f"{record.get('prompts_done', 0)}/{record.get('prompts', '?')} prompts"
        )
    if what == "judge":
        return (
            f"seed {record.get('seed')}: {record.get('judged', 0)}/{record.get('total', '?')} judged, "
            f"{record.get('failures', 0)} failed"
        )
    return ", ".join(f"{k} {v}" for k, v in record.items() if k != "what")
