"""The gauntlet's planned volume: the characters the packed scorer forwards, equal to the requests lm-eval builds
from the same task configs, and the shipped table equal to the files it was measured from."""

from __future__ import annotations

from collections import defaultdict

import pytest
from conftest import REPO

from limit.execution.digests import digest
from limit.execution.locations import parse_locations
from limit.gauntlet.benchmarks import TINY, V0, Benchmark
from limit.gauntlet.fewshot import read_rows
from limit.gauntlet.tasks import REQUIRED_FIELDS, prepare_docs, task_config
from limit.gauntlet.volume import CAPS, measure, shipped, volume
from limit.gauntlet.volume import document_chars as planned_chars

TINY_DATA = REPO / "limit" / "fixtures" / "gauntlet"
SHARED = REPO.parent / "shared" / "gauntlet_data"


def lm_eval_documents(bench, rows: list[dict], seed: int) -> list[int]:
    """What the packed scorer forwards of lm-eval's own requests: each distinct context once per row, with the
    continuations that branch off it."""
    from lm_eval.tasks import TaskManager

    config = task_config(bench, prepare_docs(bench, rows, seed), f"gauntlet_volume_{bench.name}")
    task = TaskManager(include_defaults=False).load([config])["tasks"][config["task"]]
    task.build_all_requests(limit=None, rank=0, world_size=1)
    documents: dict[tuple[int, str], int] = defaultdict(int)
    for inst in task.instances:
        context, continuation = inst.args
        documents.setdefault((inst.doc_id, context), len(context))
        documents[(inst.doc_id, context)] += len(continuation)
    return list(documents.values())


@pytest.mark.parametrize("bench", TINY, ids=lambda b: b.name)
def test_planned_characters_are_lm_evals_requests(bench):
    rows = read_rows(TINY_DATA / bench.file, REQUIRED_FIELDS[bench.kind])
    assert planned_chars(bench, rows, seed=1234) == lm_eval_documents(bench, rows, seed=1234)


def test_truncation_caps_each_document_and_a_limit_scales(tmp_path):
    bench = Benchmark("long", "world_knowledge", "language_modeling", 0, 0.0, "long.jsonl")
    path = tmp_path / "long.jsonl"
    path.write_text('{"context": "' + "x" * 39_998 + '", "continuation": "y"}\n{"context": "a", "continuation": "b"}\n')
    found = measure(bench, path, seed=1)  # 40,000 characters (the continuation is " y"), then 3: 10,000 and 1
    assert (found.rows, found.documents, found.tokens["none"]) == (2, 2, 10_001)
    assert [found.tokens[str(cap)] for cap in CAPS] == [2049, 4097, 8193, 10_001]
    assert found.scored_tokens(2000) == 2049 and found.scored_tokens(10**6) == 10_001
    assert found.scored_tokens(2048, limit=1) == 2049 / 2


def test_an_edited_file_is_measured_and_an_unknown_one_is_none(tmp_path):
    bench = next(b for b in V0 if b.name == "copa")
    (tmp_path / bench.file).parent.mkdir(parents=True)
    (tmp_path / bench.file).write_text('{"query": "q", "choices": ["a", "b"], "gold": 0}\n' * 3)
    local = volume(bench, parse_locations(str(tmp_path)), seed=1234)
    assert local.rows == 3 and local.measured
    remote = volume(bench, parse_locations("llm-foundry@be467aee1744566e46e9b993c1ff23ab01fe5c55"), seed=1234)
    assert remote.rows == shipped()["copa"]["rows"] == 100
    assert volume(bench, parse_locations("llm-foundry@be467aee1744566e46e9b993c1ff23ab01fe5c55"), seed=7) is None


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/gauntlet_data")
def test_the_shipped_table_is_the_shared_files():
    for bench in V0:
        entry, path = shipped()[bench.name], SHARED / bench.file
        if not path.is_file():
            assert "estimate" in entry and "sha256" not in entry, bench.name  # one of the four too large to hold
            continue
        assert entry["sha256"] == digest(path)["sha256"], bench.name
        found = measure(bench, path, seed=1234)
        assert (found.rows, found.documents, found.tokens) == (entry["rows"], entry["documents"], entry["tokens"])
