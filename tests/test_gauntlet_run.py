"""The gauntlet end to end through lm-eval: tiny suite on the tiny model, the CLI, S3 data, the real files."""

from __future__ import annotations

import functools
import http.server
import json
import threading

import boto3
import mlflow
import pytest
from test_gauntlet_convert import write_hub_samples

from limit import cli
from limit.execution.locations import FIXTURES, KNOWN_COMMITS, parse_locations
from limit.gauntlet.benchmarks import CATEGORIES, suite
from limit.gauntlet.convert import CONVERTERS, convert
from limit.gauntlet.data import fetch_files
from limit.gauntlet.evaluate import run_gauntlet
from limit.models.base import materialize_tiny
from limit.runner import run_step
from limit.spec.study import GauntletSpec, ModelSpec, TinyModel
from limit.steps.inputs import GauntletInput

TINY_DATA = FIXTURES / "gauntlet"
FULL_COMMIT = KNOWN_COMMITS[0]  # the paper's gauntlet


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    return str(materialize_tiny(TinyModel(), tmp_path_factory.mktemp("work")))


def in_range(result: dict) -> bool:
    lowest = -result["random_baseline"] / (1 - result["random_baseline"])
    return 0 <= result["accuracy"] <= 1 and lowest - 1e-9 <= result["score"] <= 1 + 1e-9


def test_gauntlet_step_tiny_suite(limit_env, capfd):
    spec = GauntletSpec(suite="tiny", data="fixture:gauntlet", batch_size=16)
    inp = GauntletInput(model=ModelSpec(tiny=TinyModel()), gauntlet=spec, tags={"run": "tiny"})
    summary = run_step("gauntlet", inp.model_dump_json())

    (scores_file,) = (limit_env / "artifacts" / "gauntlet").glob("*/scores.json")
    scores = json.loads(scores_file.read_text())
    assert set(scores["benchmarks"]) == {b.name for b in suite("tiny")}
    assert all(in_range(r) and r["n"] >= 10 for r in scores["benchmarks"].values())
    assert scores["complete"] is True
    assert scores["average"] == pytest.approx(sum(scores["categories"].values()) / 5)
    assert summary["gauntlet.average"] == scores["average"]
    assert {c: summary[f"gauntlet.{c}"] for c in CATEGORIES} == scores["categories"]
    details = json.loads((scores_file.parent / "details" / "tiny_arc.json").read_text())["details"]
    assert len(details) == 10 and all(len(d["tokens"]) == 4 for d in details)
    from lm_eval.api.metrics import mean_stderr  # the standard error is lm-eval's, of the rows scored

    arc = scores["benchmarks"]["tiny_arc"]
    assert arc["stderr"] == pytest.approx(mean_stderr([float(d["correct"]) for d in details]), abs=1e-12, rel=0)
    assert arc["score_stderr"] == pytest.approx(arc["stderr"] / 0.75, abs=1e-12)
    assert scores["average_stderr"] > 0 and set(scores["categories_stderr"]) == set(CATEGORIES)

    client = mlflow.MlflowClient()
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()], "")
    assert run.data.metrics["gauntlet.average"] == pytest.approx(scores["average"])
    assert run.data.metrics["per_benchmark.tiny_boolq"] == scores["benchmarks"]["tiny_boolq"]["score"]
    assert run.data.metrics["per_benchmark.tiny_boolq.accuracy"] == scores["benchmarks"]["tiny_boolq"]["accuracy"]
    assert "progress: " in capfd.readouterr().err  # one structured progress line per benchmark


def test_finished_benchmarks_are_reused_on_resume(tiny_model, tmp_path):
    benches = suite("tiny", ["tiny_copa", "tiny_arithmetic"])
    files = fetch_files(parse_locations("fixture:gauntlet"), [b.file for b in benches], tmp_path)
    resume = tmp_path / "details"
    resume.mkdir()
    kept = {"category": "commonsense_reasoning", "accuracy": 1.0, "score": 1.0, "n": 12, "random_baseline": 0.5}
    (resume / "tiny_copa.json").write_text(json.dumps({"result": kept, "details": []}))
    written = []
    scores = run_gauntlet(tiny_model, benches, files, resume_dir=resume, on_benchmark=lambda *a: written.append(a))
    assert scores["benchmarks"]["tiny_copa"] == kept  # not recomputed
    assert written == [("tiny_arithmetic", 2, 2)] and (resume / "tiny_arithmetic.json").is_file()


def test_cli_subset_reports_incomplete_categories(tiny_model, tmp_path, capfd):
    out = tmp_path / "scores.json"
    argv = ["gauntlet", "--model", tiny_model, "--data-dir", "fixture:gauntlet", "--suite", "tiny"]
    rc = cli.main([*argv, "--tasks", "tiny_copa,tiny_winograd", "--limit", "4", "--out", str(out)])
    assert rc == 0
    scores = json.loads(out.read_text())
    assert {n: r["n"] for n, r in scores["benchmarks"].items()} == {"tiny_copa": 4, "tiny_winograd": 4}
    assert all({"accuracy", "score", "n"} <= set(r) for r in scores["benchmarks"].values())
    assert scores["categories"]["commonsense_reasoning"] == scores["benchmarks"]["tiny_copa"]["score"]
    assert scores["categories"]["world_knowledge"] is None and scores["average"] is None
    console = capfd.readouterr()
    assert "Av: incomplete" in console.out
    copa = scores["benchmarks"]["tiny_copa"]  # lm-eval's table: the value, ±, its standard error
    assert f"|{copa['accuracy']:>8.4f}|±|{copa['stderr']:.4f}|" in console.out
    assert f"Com Reas: {copa['score']:+.4f} ± {scores['categories_stderr']['commonsense_reasoning']:.4f}" in console.out
    # the console: a progress line per benchmark; lm-eval's bars and our per-benchmark scores are in the log
    progress = [line.split(" (")[0] for line in console.err.splitlines() if line.startswith("benchmarks:")]
    assert progress == ["benchmarks: 1/2 tiny_copa", "benchmarks: 2/2 tiny_winograd"]
    assert "tiny_copa: accuracy" in out.with_suffix(".log").read_text() and "accuracy" not in console.err


def test_cli_bad_input_is_one_line(tiny_model, tmp_path, capsys):
    out = tmp_path / "scores.json"
    rc = cli.main(["gauntlet", "--model", tiny_model, "--data-dir", str(tmp_path / "nope"), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert err.count("\n") == 0 and "gauntlet.data: folder not found" in err
    with pytest.raises(ValueError, match="give the full 40-hex-digit llm-foundry commit"):
        parse_locations("llm-foundry@main!")


def test_data_from_s3(s3_env, tiny_model, tmp_path):
    bucket = s3_env
    s3 = boto3.client("s3")
    benches = suite("tiny")
    for bench in benches[:-1]:  # the last one is left out: it must come back missing, not fail
        s3.upload_file(str(TINY_DATA / bench.file), bucket, f"data/gauntlet/{bench.file}")
    files = fetch_files(parse_locations(f"s3://{bucket}/data/gauntlet"), [b.file for b in benches], tmp_path)
    assert set(files) == {b.file for b in benches[:-1]}
    assert all(files[b.file].read_bytes() == (TINY_DATA / b.file).read_bytes() for b in benches[:-1])

    scores = run_gauntlet(tiny_model, suite("tiny", ["tiny_copa", "tiny_boolq"]), files, GauntletSpec(limit=3))
    assert scores["benchmarks"]["tiny_copa"]["n"] == 3 and scores["missing"] == ["tiny_boolq"]
    assert scores["categories"]["reading_comprehension"] is None


def test_data_from_llm_foundry_at_a_commit(tmp_path, monkeypatch):
    """The llm-foundry@<commit> path over real HTTP, from a local mirror laid out like GitHub's raw host."""
    mirror = tmp_path / "mirror"
    bench = suite("tiny")[0]
    source = mirror / FULL_COMMIT / "scripts" / "eval" / "local_data" / bench.file
    source.parent.mkdir(parents=True)
    source.write_bytes((TINY_DATA / bench.file).read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{{commit}}/scripts/eval/local_data/{{file}}"
        monkeypatch.setenv("LIMIT_LLM_FOUNDRY_RAW", url)
        files = fetch_files(
            parse_locations(f"llm-foundry@{FULL_COMMIT}"), [bench.file, "x/absent.jsonl"], tmp_path / "work"
        )
    finally:
        server.shutdown()
    assert list(files) == [bench.file]  # a 404 is a missing file, not an error
    assert files[bench.file].read_bytes() == source.read_bytes()
    assert tmp_path / "work" / "gauntlet-data" / f"llm-foundry-{FULL_COMMIT}" in files[bench.file].parents


def test_real_v0_files_each_score_in_range(shared, tiny_model, tmp_path):
    """The 29 shared files plus the 4 others converted from hub-schema samples: all 33 score, average complete."""
    data = shared / "gauntlet_data"
    benches = suite("v0")
    shared_only = fetch_files(parse_locations(str(data)), [b.file for b in benches], tmp_path)
    absent = {b.name for b in benches if b.file not in shared_only}
    if absent != set(CONVERTERS):
        pytest.skip(f"{data} does not hold the 29 v0 files its SOURCE.md lists")

    converted = tmp_path / "converted"
    for name, source in write_hub_samples(tmp_path / "hub").items():
        convert(name, converted, str(source))
    files = fetch_files(parse_locations(f"{data},{converted}"), [b.file for b in benches], tmp_path)
    scores = run_gauntlet(tiny_model, benches, files, GauntletSpec(limit=2, batch_size=16))
    assert set(scores["benchmarks"]) == {b.name for b in benches}
    for name, result in scores["benchmarks"].items():
        assert result["n"] == 2 and in_range(result), name
    assert scores["complete"] is True and scores["missing"] == []
    assert scores["average"] == pytest.approx(sum(scores["categories"].values()) / 5)
