"""The report from stored outputs at the paper's scale: data, Markdown, figure, the MLflow summary runs (one per
model, the same keys for all, the chosen epoch's numbers) and their replay when the report step is reused."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import mlflow
import pytest
from synthetic import store_study

from limit.cli import main as cli
from limit.execution import tracking
from limit.execution.store import Store
from limit.gauntlet.benchmarks import CATEGORIES, suite
from limit.plan import build_plan
from limit.runner import run_step
from limit.spec.study import load_study, slug

PAPER_COLUMNS = ["select.chosen_epoch", "train.tokens", "gauntlet.average", *(f"gauntlet.{c}" for c in CATEGORIES)]


@pytest.fixture
def full_study(limit_env: Path):
    """The `full` plan with every step's outputs stored (made up, seeded), nothing run."""
    plan = build_plan(load_study("full"))
    store = Store.open()
    choices = store_study(plan, store)
    return plan, store, choices


def test_summary_runs_are_one_row_per_model_with_the_chosen_epochs_numbers(full_study, monkeypatch):
    plan, store, choices = full_study
    parent = tracking.start_parent("full")
    monkeypatch.setenv("LIMIT_PARENT_RUN_ID", parent)
    monkeypatch.setenv("LIMIT_STUDY", "full")
    run_step("report", plan.steps["report"].input.model_dump_json())

    table = mlflow.search_runs(
        experiment_names=["limit-full"],
        filter_string=f"tags.`limit.kind` = 'summary' and tags.`mlflow.parentRunId` = '{parent}'",
    )
    assert sorted(table["tags.limit.run"]) == sorted(m.name for m in plan.steps["report"].input.models)
    assert not table[[f"metrics.{c}" for c in PAPER_COLUMNS]].isna().any().any()  # no NaN in the paper's table
    rows = {row["tags.limit.run"]: row for _, row in table.iterrows()}
    for name, choice in choices.items():
        chosen = next(e for e in choice["epochs"] if e["epoch"] == choice["epoch"])
        last = choice["epochs"][-1]
        assert rows[name]["metrics.select.chosen_epoch"] == choice["epoch"] != last["epoch"]
        assert rows[name]["metrics.gauntlet.average"] == pytest.approx(chosen["average"])
        assert rows[name]["metrics.gauntlet.average"] != pytest.approx(last["average"])
        for category, value in chosen["categories"].items():
            assert rows[name][f"metrics.gauntlet.{category}"] == pytest.approx(value)
        assert rows[name]["metrics.train.tokens"] > 0
        params = {k.removeprefix("params."): v for k, v in rows[name].items() if k.startswith("params.")}
        assert params["chosen_epoch"] == str(choice["epoch"]) and params["method"] == "full"
        assert params["base_model"] and params["dataset"] != "none (base model)"
    for base in ("mpt-7b", "mpt-30b"):  # the base models: same keys, epoch 0, no finetuning tokens
        scores = json.loads(store.read_text(plan.steps[f"gauntlet-{base}"].ref, "scores.json"))
        assert rows[base]["metrics.gauntlet.average"] == pytest.approx(scores["average"])
        assert (rows[base]["metrics.select.chosen_epoch"], rows[base]["metrics.train.tokens"]) == (0, 0)
        assert rows[base]["tags.limit.dataset"] == "none (base model)"
    benchmarks = [f"metrics.per_benchmark.{b.name}" for b in suite("v0")]
    assert not table[benchmarks].isna().any().any()
    # a judged pair from both sides: A's rate and B's complement, each with its 95% bounds
    key = f"judge.win_rate.lima-test.vs.{slug('mpt-7b-instruct-v1')}"
    a = rows["mpt-7b-lima"]
    assert a[f"metrics.{key}.ci95_low"] < a[f"metrics.{key}"] < a[f"metrics.{key}.ci95_high"]
    b = rows["mpt-7b-instruct-v1"]["metrics.judge.win_rate.lima-test.vs.mpt-7b-lima"]
    assert b == pytest.approx(1 - a[f"metrics.{key}"])

    client = mlflow.MlflowClient()
    lima = rows["mpt-7b-lima"]["run_id"]
    curve = client.get_metric_history(lima, "per_epoch.gauntlet.average")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == [
        e["epoch"] for e in choices["mpt-7b-lima"]["epochs"]
    ]
    parent_run = client.get_run(parent)
    assert {"report.md", "report.json", "report.png"} <= {a.path for a in client.list_artifacts(parent)}
    assert any(k.startswith("win_rate.") for k in parent_run.data.metrics)
    current = tracking.current_filter("full")
    assert_paper_first(mlflow.search_runs(experiment_names=["limit-full"], filter_string=current, output_format="list"))
    assert_tables(parent, rows)


def assert_paper_first(runs: list) -> None:
    """MLflow's compare-runs page lists every metric key of the runs sorted by code point (its Utils.getKeys):
    the paper's columns, the gauntlet's average and categories and then the judge's win rates, come first."""
    keys = sorted({k for run in runs for k in run.data.metrics})
    paper = ["gauntlet.average", *sorted(f"gauntlet.{c}" for c in CATEGORIES)]
    assert keys[: len(paper)] == paper
    rates = [k for k in keys if k.startswith("judge.win_rate.")]
    assert rates and keys[len(paper) : len(paper) + len(rates)] == rates


def assert_tables(parent: str, rows: dict) -> None:
    """The gauntlet and win-rate tables on the parent run, read back through MLflow's API."""
    mlflow.set_experiment("limit-full")  # load_table searches the active experiment's runs
    gauntlet = mlflow.load_table("tables/gauntlet.json", run_ids=[parent])
    assert sorted(gauntlet["model"]) == sorted(rows)
    for _, line in gauntlet.iterrows():
        assert line["gauntlet.average"] == pytest.approx(round(rows[line["model"]]["metrics.gauntlet.average"], 3))
    rates = mlflow.load_table("tables/win_rates.json", run_ids=[parent])
    assert len(rates) and (rates["ci95_low"] <= rates["win_rate_a"]).all()
    assert (rates["win_rate_a"] <= rates["ci95_high"]).all()


def test_a_reused_report_gives_the_next_execution_the_same_summary_runs(full_study, monkeypatch):
    plan, store, _ = full_study
    first = tracking.start_parent("full")
    monkeypatch.setenv("LIMIT_PARENT_RUN_ID", first)
    monkeypatch.setenv("LIMIT_STUDY", "full")
    report = plan.steps["report"]
    run_step("report", report.input.model_dump_json())
    monkeypatch.delenv("LIMIT_PARENT_RUN_ID")

    def summaries(parent: str, kind: str = "summary") -> dict:
        found = mlflow.search_runs(
            experiment_names=["limit-full"],
            filter_string=f"tags.`limit.kind` = '{kind}' and tags.`mlflow.parentRunId` = '{parent}'",
            output_format="list",
        )
        return {r.data.tags["limit.run"]: r for r in found}

    before = summaries(first)
    second = tracking.start_parent("full")
    saved = tracking.load_record(store.read_text(report.ref, tracking.RECORD))
    tracking.log_reused(second, "full", "report", report.key, report.input.tags, store.manifest(report.ref), saved,
                        lambda: store.fetch(report.ref))  # fmt: skip

    after = summaries(second)
    assert set(before) == set(after) and len(after) == 10
    for name, run in after.items():
        assert run.data.metrics == before[name].data.metrics and run.data.params == before[name].data.params
        assert run.data.tags["limit.reused_from"] == before[name].info.run_id
    # The README's filter gives the current table only: the first execution's runs are kept, superseded.
    current = mlflow.search_runs(experiment_names=["limit-full"], filter_string=tracking.current_filter("full"))
    assert len(current) == 10 and set(current["tags.mlflow.parentRunId"]) == {second}
    assert set(summaries(first, "summary.superseded")) == set(before)
    link = tracking.compare_link("full")
    assert "#/compare-runs?runs=[" in link and all(run.info.run_id in link for run in after.values())
    client = mlflow.MlflowClient()
    assert client.get_run(second).data.metrics == client.get_run(first).data.metrics
    assert {"report.md", "report.json", "report.png"} <= {a.path for a in client.list_artifacts(second)}
    assert_paper_first(list(after.values()))
    averages = {name: {"metrics.gauntlet.average": run.data.metrics["gauntlet.average"]} for name, run in after.items()}
    assert_tables(second, averages)
    (step_run,) = mlflow.search_runs(
        experiment_names=["limit-full"],
        filter_string=f"tags.`limit.kind` = 'report' and tags.`mlflow.parentRunId` = '{second}'",
        output_format="list",
    )
    assert step_run.data.tags["limit.reused"] == "true" and step_run.data.metrics["models"] == 10


def test_limit_report_renders_a_half_finished_study_and_export_writes_the_table(limit_env, tmp_path):
    plan = build_plan(load_study("full"))
    store = Store.open()
    skip = ("select-mpt-30b-lima", "judge-mpt-30b-lima-vs-mpt-30b-instruct-v3-lima-test")
    store_study(plan, store, skip=skip, incomplete="mpt-30b")

    assert cli(["report", "full"]) == 0
    folder = limit_env / "full"
    markdown = (folder / "report.md").read_text()
    assert "| mpt-30b-lima (pending) |" in markdown
    assert "| mpt-30b (base) | - | - | - | 3200 | n/a [2] |" in markdown  # incomplete: n/a, never 0
    assert "- [1] no data for squad (not found in gauntlet.data)" in markdown  # and why, under the table
    assert "- [2] categories without a score: reading_comprehension" in markdown
    assert re.search(r"\| mpt-7b \(base\) \| - \| - \| - \| 3300 \| 0\.\d{3} ± 0\.\d{3} \|", markdown)
    assert "| 50.0 ± 5.0 → " in markdown  # appendix: raw accuracy (%) ± its standard error, then the score
    judged = plan.steps["report"].input.pairs[0].judge  # per-sample outputs: where they are in the store
    assert f"`{limit_env / 'artifacts' / judged}/annotations.jsonl`" in markdown
    ref = plan.steps["gauntlet-mpt-7b"].ref
    assert f"  - `{ref}` gauntlet-mpt-7b" in markdown  # provenance: the step's name beside its key
    assert "(+0." in markdown or "(-0." in markdown  # deltas to the base model
    for heading in ("## Appendix: every benchmark", "## Sample judgments", "## Provenance"):
        assert heading in markdown
    assert markdown.count("; the judge preferred") == 2 * 11  # two samples per finished pair
    assert plan.steps["report"].input.pairs[0].judge in markdown  # step keys in the provenance
    data = json.loads((folder / "report.json").read_text())
    assert data["provenance"]["limit_version"] and len(data["provenance"]["steps"]) > 40
    assert (folder / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((limit_env / "artifacts").glob("report/*")), "nothing was computed or stored"

    out = tmp_path / "table.csv"
    assert cli(["export", "full", "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 9 and {r["model"] for r in rows} == {m.name for m in plan.steps["report"].input.models} - {
        "mpt-30b-lima"
    }
    header = list(rows[0])
    assert header[:4] == ["model", "kind", "base_model", "dataset"] and header[4:6] == PAPER_COLUMNS[:2]
    base_30b = next(r for r in rows if r["model"] == "mpt-30b")
    assert base_30b["gauntlet.average"] == "" and base_30b["gauntlet.reading_comprehension"] == ""
    assert base_30b["gauntlet.world_knowledge"] == str(round(data["models"][-1]["categories"]["world_knowledge"], 3))
    rates = {k: v for r in rows for k, v in r.items() if k.startswith("judge.win_rate.") and v}
    assert rates and all(0 <= float(v) <= 100 and len(v.partition(".")[2]) <= 1 for v in rates.values())  # in %


def test_the_figure_reads_at_the_papers_scale(limit_env):
    """10 models, 12 pairs: a row of panels per base model; this test writes the PNG a human looks at."""
    from PIL import Image

    plan = build_plan(load_study("full"))
    store_study(plan, Store.open(), incomplete="mpt-30b")
    assert cli(["report", "full"]) == 0
    with Image.open(limit_env / "full" / "report.png") as image:
        width, height = image.size
    assert 1600 <= width <= 2600 and 800 <= height <= 1200  # two rows of panels, not one crowded panel
    if os.environ.get("LIMIT_KEEP_FIGURE"):
        Path(os.environ["LIMIT_KEEP_FIGURE"]).write_bytes((limit_env / "full" / "report.png").read_bytes())


def test_an_edited_scores_json_never_reaches_the_report(limit_env, capsys):
    """The issue's case: a stored scores.json edited to 0.999 after its step completed. `limit report` refuses
    it in one line naming the file, and the step is no longer done (the next run redoes it)."""
    plan = build_plan(load_study("full"))
    store = Store.open()
    store_study(plan, store)
    baseline = next(s for s in plan.order() if s.kind == "gauntlet" and s.input.model is not None)
    path = limit_env / "artifacts" / baseline.ref / "scores.json"
    scores = json.loads(path.read_text())
    path.write_text(json.dumps(scores | {"average": 0.999}))
    assert cli(["report", "full"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{baseline.ref}/scores.json: " in err and "marked not done" in err, err
    assert store.manifest(baseline.ref) is None
    assert not (limit_env / "full" / "report.md").exists()


CHROMIUM = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run")
CHROMIUM += ("--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium(page: Path, tmp_path: Path, *flags: str) -> str:
    import shutil
    import subprocess

    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    argv = ["chromium", *CHROMIUM, f"--user-data-dir={tmp_path / 'profile'}", *flags, page]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_report_html_is_one_page_with_the_numbers_and_a_browser_by_pair(limit_env, tmp_path):
    """report.html in headless Chromium: self-contained, its tables hold report.json's numbers, and the sample
    browser shows the chosen pair's judged prompts only (`#pair=N` chooses, as the select does)."""
    import re

    plan = build_plan(load_study("full"))
    store_study(plan, Store.open(), incomplete="mpt-30b")
    assert cli(["report", "full"]) == 0
    page = limit_env / "full" / "report.html"
    source = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", source), "nothing is fetched from the network"
    data = json.loads((limit_env / "full" / "report.json").read_text())

    dom = chromium(f"file://{page}#pair=1", tmp_path, "--dump-dom")
    lima = next(m for m in data["models"] if m["name"] == "mpt-7b-lima")
    assert f"{lima['average']:.3f}" in dom and "<table>" in dom and 'src="data:image/png;base64,' in dom
    rows = re.findall(r'<tr data-pair="(\d+)"( style="display: none;")?', dom)
    assert {index for index, hidden in rows if not hidden} == {"1"}
    assert len([1 for index, _ in rows if index == "1"]) == len(data["pairs"][1]["browse"]) > 0

    if os.environ.get("LIMIT_KEEP_HTML_SHOT"):  # docs/report-html.png is made so
        chromium(
            page.as_uri(), tmp_path, f"--screenshot={os.environ['LIMIT_KEEP_HTML_SHOT']}", "--window-size=1100,800"
        )


def test_every_na_in_the_report_says_why():
    from limit.execution.outputs import Scores
    from limit.report.data import not_available
    from limit.report.markdown import Footnotes, benchmark_line, judge_row

    scores = Scores(average=None, categories={"world_knowledge": None, "reading_comprehension": 0.1}, missing=["mmlu"])
    assert not_available(scores) == {
        "world_knowledge": "no data for mmlu (not found in gauntlet.data)",
        "average": "categories without a score: world_knowledge",
    }
    notes = Footnotes()
    pair = {
        "a": "x",
        "b": "y",
        "seeds": {"1": {"win_rate_a": 0.5}},
        "win_rate_a": 0.5,
        "ci95": [0.4, 0.6],
        "seed_std": 0.0,
    }
    line = judge_row(pair | {"lc_win_rate_a": None, "lc_reason": "too few rows for the GLM"}, notes)
    assert "| 0.0 | n/a [1] |" in line and notes.reasons[0] == "length-controlled: too few rows for the GLM"
    assert notes.reasons[1:] == ["the judge step recorded no response lengths", "the judge step recorded no cost"]
    rows = [
        {
            "name": "m1",
            "benchmarks": {
                "arc": {
                    "accuracy": 0.412,
                    "stderr": 0.0131,
                    "score": 0.216,
                    "score_stderr": 0.0175,
                    "n": 500,
                    "random_baseline": 0.25,
                }
            },
        },
        {"name": "m2", "status": "pending", "benchmarks": {}},
    ]
    line = benchmark_line("arc", "World", rows, notes)
    assert line == "| arc | World | 25% | 500 | 41.2 ± 1.3 → 0.216 ± 0.018 | n/a [4] |"
    assert notes.lines()[-1].startswith("- [4] the model's steps are not complete")
