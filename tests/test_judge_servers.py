"""The openai judge backend (alpaca-eval's annotator + the openai client) against judge servers on 127.0.0.1."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from limit.judge.openai_backend import OpenAIJudge
from limit.judge.ranking import FIRST_WINS, SECOND_WINS, is_switched
from limit.judge.replay_server import JudgeServer, Reply
from limit.judge.winrate import WIN_A, count
from limit.spec.study import JudgeSpec


def pairs(n: int) -> list[tuple[str, str, str]]:
    """A's output is always the GOOD one, so a judge that reads the outputs prefers A every time."""
    return [(f"Question number {i}: what is {i} plus {i}?", f"GOOD answer {2 * i}", f"bad {i}") for i in range(n)]


def prefers_good(instruction: str, shown_1: str, shown_2: str) -> Reply:
    return Reply(FIRST_WINS if shown_1.startswith("GOOD") else SECOND_WINS)


def client(server: JudgeServer, **kwargs) -> OpenAIJudge:
    spec = {"base_url": server.base_url, "concurrency": 4, "retry_wait": 0, "max_retries": 2, **kwargs}
    return OpenAIJudge(JudgeSpec(**spec))


def test_always_first_judge_gives_half_because_positions_are_randomized(tmp_path: Path):
    items = pairs(40)
    with JudgeServer(lambda *shown: Reply(FIRST_WINS)) as server:
        outcomes = client(server).judge(items, seed=1, cache=tmp_path / "seed-1.json")
    counts = count(o.preference for o in outcomes)
    # A wins exactly where alpaca-eval left it in first position
    assert counts.wins_a == sum(not is_switched(instr, 1) for instr, _, _ in items)
    assert counts.failures == counts.ties == 0
    assert 0.3 <= counts.win_rate_a <= 0.7


def test_swaps_are_undone_and_differ_between_seeds(tmp_path: Path):
    items = pairs(24)
    with JudgeServer(prefers_good) as server:
        by_seed = {s: client(server).judge(items, seed=s, cache=tmp_path / f"seed-{s}.json") for s in (1, 2)}
    for outcomes in by_seed.values():
        assert [o.preference for o in outcomes] == [WIN_A] * len(items)
    swaps = {s: [is_switched(instr, s) for instr, _, _ in items] for s in (1, 2)}
    assert swaps[1] != swaps[2]


class Flaky:
    """Pair k's first answer is garbage, HTTP 500 or HTTP 429, depending on k % 4; pair 'doomed' always 500s."""

    def __init__(self):
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, instruction: str, shown_1: str, shown_2: str) -> Reply:
        with self.lock:
            self.seen[instruction] = calls = self.seen.get(instruction, 0) + 1
        if "doomed" in instruction:
            return Reply(status=500, error="The server had an error while processing your request.")
        k = int(instruction.split()[2].rstrip(":"))
        if calls == 1 and k % 4 == 1:
            return Reply("I think the first one, probably?")
        if calls == 1 and k % 4 == 2:
            return Reply(status=500, error="The server had an error while processing your request.")
        if calls == 1 and k % 4 == 3:
            return Reply(status=429, error="Rate limit reached for requests")
        return prefers_good(instruction, shown_1, shown_2)


def test_garbage_500_and_429_are_retried_and_failures_are_counted_not_dropped(tmp_path: Path):
    items = pairs(12) + [("Question number 99: doomed", "GOOD answer", "bad answer")]
    with JudgeServer(Flaky()) as server:
        outcomes = client(server).judge(items, seed=1, cache=tmp_path / "seed-1.json")
    counts = count(o.preference for o in outcomes)
    assert (counts.wins_a, counts.wins_b, counts.failures, counts.n) == (12, 0, 1, 13)
    assert counts.win_rate_a == 1.0  # the failure is not a loss
    assert "InternalServerError" in outcomes[-1].error


def test_second_run_hits_the_cache_and_makes_no_requests(tmp_path: Path):
    items = pairs(10)
    cache = tmp_path / "seed-3.json"
    with JudgeServer(prefers_good) as server:
        first = client(server).judge(items, seed=3, cache=cache)
        before = server.requests
        second = client(server).judge(items, seed=3, cache=cache)
        assert server.requests == before
    assert [o.preference for o in second] == [o.preference for o in first] == [WIN_A] * 10
    assert all(o.tokens > 0 for o in second)  # token counts come back from the cache too


def test_failures_are_not_cached(tmp_path: Path):
    items = pairs(10) + [("Question number 99: doomed", "GOOD answer", "bad answer")]
    cache = tmp_path / "seed-3.json"
    policy = Flaky()
    with JudgeServer(policy) as server:
        client(server).judge(items, seed=3, cache=cache)
        seen = dict(policy.seen)
        again = client(server, max_retries=0).judge(items, seed=3, cache=cache)
    asked_again = {instr for instr, n in policy.seen.items() if n > seen[instr]}
    assert asked_again == {"Question number 99: doomed"}
    assert [o.preference for o in again[:-1]] == [WIN_A] * 10 and again[-1].preference is None


def test_missing_api_key_for_openai_itself_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from limit.errors import LimitError

    monkeypatch.delenv("LIMIT_TEST_NO_API_KEY", raising=False)
    judge = OpenAIJudge(JudgeSpec(api_key_env="LIMIT_TEST_NO_API_KEY"))
    with pytest.raises(LimitError, match="LIMIT_TEST_NO_API_KEY"):
        judge.judge(pairs(1), seed=1, cache=tmp_path / "c.json")


def test_an_unreachable_judge_ends_in_failures_not_a_crash(tmp_path: Path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = OpenAIJudge(JudgeSpec(base_url=f"http://127.0.0.1:{port}/v1", retry_wait=0, max_retries=1), chunk_size=4)
    outcomes = judge.judge(pairs(20), seed=1, cache=tmp_path / "seed-1.json")
    counts = count(o.preference for o in outcomes)
    assert (counts.failures, counts.n, counts.win_rate_a) == (20, 20, None)
    assert all("APIConnectionError" in o.error for o in outcomes)
