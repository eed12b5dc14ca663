"""The tiny study end to end through the local backend: report, MLflow runs, reuse, resume, S3."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import run_env, still_running

from limit.judge.calibration import calibration_set
from limit.judge.ranking import FIRST_WINS, SECOND_WINS
from limit.judge.replay_server import ReplayJudgeServer, Reply
from limit.plan import build_plan
from limit.spec.study import STUDIES_DIR, load_study

pytestmark = pytest.mark.slow
CATEGORIES = {
    "world_knowledge",
    "commonsense_reasoning",
    "language_understanding",
    "symbolic_problem_solving",
    "reading_comprehension",
}


def limit_popen(study: str, workdir: Path, *extra: str, popen: dict | None = None, **env: str) -> subprocess.Popen:
    """`limit run` in the background; `popen`: more Popen arguments (stderr into stdout, a session of its own)."""
    argv = [sys.executable, "-m", "limit.cli", "run", study, "--workdir", str(workdir), *extra]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **(popen or {})}
    return subprocess.Popen(argv, text=True, env=work_env(workdir, **env), **pipes)


def work_env(workdir: Path, **env: str) -> dict[str, str]:
    """A command's environment for one work folder: its MLflow store, no inherited artifact root or parent run."""
    env = run_env(MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}", **env)
    for name in ("LIMIT_ARTIFACTS", "LIMIT_PARENT_RUN_ID"):
        env.pop(name, None)
    return env


def finished(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=1500)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def limit_run(study: str, workdir: Path, *extra: str, **env: str) -> subprocess.CompletedProcess:
    return finished(limit_popen(study, workdir, *extra, **env))


def mini_study(tmp_path: Path, judge: dict | None = None) -> Path:
    """The tiny study cut to one 1-epoch finetune judged against the base model: every step kind, less time.
    `judge`: another judge section."""
    data = yaml.safe_load((STUDIES_DIR / "tiny.yaml").read_text())
    data["name"] = "mini"
    data["runs"] = [data["runs"][0]]
    data["training"]["defaults"]["epochs"] = 1
    data["generation"]["seeds"] = [1]
    data["pairs"] = [{"a": data["runs"][0]["name"], "b": "tiny-mpt", "prompts": "tiny-test"}]
    data["judge"] = judge or data["judge"]
    path = tmp_path / "mini.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> tuple[Path, list[subprocess.CompletedProcess]]:
    """Two `limit run tiny` at once on one fresh work folder (the MLflow store, every step, the report)."""
    workdir = tmp_path_factory.mktemp("tiny") / "runs"
    results = [finished(p) for p in [limit_popen("tiny", workdir), limit_popen("tiny", workdir)]]
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir, results


@pytest.fixture(scope="module")
def tiny_run(tiny_runs) -> tuple[Path, subprocess.CompletedProcess]:
    workdir, results = tiny_runs
    return workdir, results[0]


def test_two_concurrent_runs_finish_with_the_same_report_and_their_own_logs(tiny_runs):
    workdir, results = tiny_runs
    reports = [r.stdout[r.stdout.index("## Eval Gauntlet") : r.stdout.index("\nreport: ")] for r in results]
    assert reports[0] == reports[1] and "| tiny-lima | tiny-mix |" in reports[0]
    assert len(list((workdir / "tiny" / "logs").iterdir())) == 2, "one log folder per execution"
    # each step ran in one execution; the other waited for it and says it reused it, not that it ran it
    ran = [int(re.search(r"\n(\d+) steps ran", r.stdout).group(1)) for r in results]
    assert sum(ran) == len(build_plan(load_study("tiny")).steps), ran
    assert not list((workdir / "artifacts").rglob("*.partial")) and not list((workdir / "artifacts").rglob("*.lock"))


def test_tiny_report(tiny_run):
    workdir, result = tiny_run
    report = json.loads((workdir / "tiny" / "report.json").read_text())
    models = {m["name"]: m for m in report["models"]}
    assert set(models) == {"tiny-lima", "tiny-mix", "tiny-mpt"}
    for name in ("tiny-lima", "tiny-mix"):
        assert models[name]["kind"] == "run" and models[name]["epoch"] in (1, 2)
        assert [e["epoch"] for e in models[name]["epochs"]] == [1, 2]
    assert models["tiny-mpt"]["kind"] == "baseline" and models["tiny-mpt"]["epoch"] is None
    for model in models.values():
        assert set(model["categories"]) == CATEGORIES
        assert -1.0 <= model["average"] <= 1.0
    (pair,) = report["pairs"]
    assert (pair["a"], pair["b"]) == ("tiny-lima", "tiny-mix")
    assert set(pair["seeds"]) == {"1", "2"}
    for counts in pair["seeds"].values():
        assert counts["wins_a"] + counts["wins_b"] + counts["ties"] + counts["failures"] == counts["n"]
    assert 0.0 <= pair["win_rate_a"] <= 1.0
    markdown = (workdir / "tiny" / "report.md").read_text()
    assert "| Av | World | Com Reas | Lang Und | Symb Prob | Read Comp |" in markdown
    assert (workdir / "tiny" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "report: " in result.stdout
    # report.html's browser: every judged prompt of the pair, and the first gauntlet rows of each model
    page = (workdir / "tiny" / "report.html").read_text()
    assert page.count('<tr data-pair="0"') == len(pair["browse"]) == sum(c["n"] for c in pair["seeds"].values())
    for name, model in models.items():
        assert model["examples"] and page.count(f'<tr data-model="{name}"') == sum(map(len, model["examples"].values()))


def study_runs(workdir: Path, study: str = "tiny") -> tuple[mlflow.MlflowClient, list]:
    """Every MLflow run of the study's experiment, read without touching MLflow's process-wide URI."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"limit-{study}")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def test_tiny_mlflow_runs(tiny_runs):
    """Each of the two executions has a whole parent run (a child per step, ran or reused); each step ran once."""
    workdir, _ = tiny_runs
    client, runs = study_runs(workdir)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    plan = build_plan(load_study("tiny"))
    for parent in parents:
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        summaries = [c for c in children if c.data.tags["limit.kind"].startswith("summary")]
        assert len(summaries) == 3  # one per model, beside the steps
        children = [c for c in children if c not in summaries]
        assert sorted(c.data.tags["limit.kind"] for c in children) == sorted(s.kind for s in plan.order())
        assert {c.data.tags["limit.key"] for c in children} == {s.key for s in plan.order()}
        assert any(k.startswith("win_rate.") for k in parent.data.metrics)
        assert {"report.md", "report.json", "report.png", "report.html"} <= {
            a.path for a in client.list_artifacts(parent.info.run_id)
        }
        assert any(k.startswith("gauntlet_average.") for k in parent.data.metrics)
        assert any(k.startswith("failures.") for k in parent.data.metrics)  # per judged pair
        assert re.fullmatch(rf"tiny \d{{4}}-\d\d-\d\d \d\d:\d\d {parent.info.run_id[:8]}", parent.info.run_name)
    ran = [r for r in runs if "mlflow.parentRunId" in r.data.tags and r.data.tags.get("limit.reused") != "true"]
    ran = [r for r in ran if not r.data.tags["limit.kind"].startswith("summary")]
    assert sorted(r.data.tags["limit.key"] for r in ran) == sorted(s.key for s in plan.order())
    for child in ran:
        tags = child.data.tags
        assert tags["limit.study"] == "tiny"
        if tags["limit.kind"] == "finetune":
            assert {"limit.model", "limit.dataset", "limit.run"} <= set(tags)
            assert len(client.get_metric_history(child.info.run_id, "loss")) >= 2, "loss logged per step"
            assert len(client.get_metric_history(child.info.run_id, "learning_rate")) >= 2
        if tags["limit.kind"] == "gauntlet":
            assert "gauntlet.average" in child.data.metrics
        if tags["limit.kind"] == "judge":
            assert "win_rate_a" in child.data.metrics


def test_tiny_summary_runs_are_the_papers_table(tiny_run):
    """One current summary run per model with the same keys, after two executions (the second replays the
    first's, which it supersedes): search_runs gives the table, one row per model, no NaN."""
    workdir, _ = tiny_run
    report = json.loads((workdir / "tiny" / "report.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    table = mlflow.search_runs(experiment_names=["limit-tiny"], filter_string="tags.`limit.kind` = 'summary'")
    columns = ["select.chosen_epoch", "train.tokens", "gauntlet.average", *(f"gauntlet.{c}" for c in CATEGORIES)]
    columns.append("judge.win_rate.tiny-test.vs.tiny-mix")
    assert sorted(table["tags.limit.run"]) == ["tiny-lima", "tiny-mix", "tiny-mpt"]
    rows = {row["tags.limit.run"]: row for _, row in table.iterrows()}
    assert not table.loc[table["tags.limit.run"] == "tiny-lima", [f"metrics.{c}" for c in columns]].isna().any().any()
    for model in report["models"]:
        row = rows[model["name"]]
        assert row["metrics.select.chosen_epoch"] == (model["epoch"] or 0)
        assert row["metrics.gauntlet.average"] == pytest.approx(model["average"])
        for category in CATEGORIES:
            assert row[f"metrics.gauntlet.{category}"] == pytest.approx(model["categories"][category])
    assert rows["tiny-mpt"]["metrics.train.tokens"] == 0 and rows["tiny-lima"]["metrics.train.tokens"] > 0
    assert rows["tiny-mix"]["metrics.judge.win_rate.tiny-test.vs.tiny-lima"] == pytest.approx(
        1 - report["pairs"][0]["win_rate_a"]
    )


def test_rerun_redoes_nothing(tiny_run):
    workdir, _ = tiny_run
    before = {p: p.stat().st_mtime for p in (workdir / "artifacts").rglob("_manifest.json")}
    result = limit_run("tiny", workdir)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 steps ran" in result.stdout
    assert {p: p.stat().st_mtime for p in (workdir / "artifacts").rglob("_manifest.json")} == before
    _, runs = study_runs(workdir)
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    assert len(parents) == 3
    reused = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[-1].info.run_id]
    assert reused and all(r.data.tags.get("limit.reused") == "true" for r in reused)
    # a reused step's run holds what the run that produced it held: params, metrics, curves
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    by_id = {r.info.run_id: r for r in runs}
    finetunes = [r for r in reused if r.data.tags["limit.kind"] == "finetune"]
    assert len(finetunes) == 2
    for run in finetunes:
        original = by_id[run.data.tags["limit.reused_from"]]
        # made by one of the two concurrent executions (whichever took the step's lock first)
        assert original.data.tags["mlflow.parentRunId"] in (parents[0].info.run_id, parents[1].info.run_id)
        assert run.data.params == original.data.params and "train.lr" in run.data.params
        assert run.data.metrics == original.data.metrics
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")]
        assert history == [(m.step, m.value) for m in client.get_metric_history(original.info.run_id, "loss")]
        assert len(history) >= 2
    summaries = [r for r in reused if r.data.tags["limit.kind"] == "summary"]
    assert sorted(r.data.tags["limit.run"] for r in summaries) == ["tiny-lima", "tiny-mix", "tiny-mpt"]


def test_killed_run_leaves_no_step_behind_and_the_rerun_gives_the_same_report(tmp_path, tiny_run):
    """`kill -9` of `limit run`'s process group during a finetune: every step process ends within seconds (no
    orphan goes on to commit), and the rerun reuses what completed and reports as an uninterrupted run."""
    import psutil

    workdir = tmp_path / "runs"
    proc = limit_popen("tiny", workdir, popen={"stderr": subprocess.STDOUT, "start_new_session": True})
    deadline = time.time() + 600
    while not list(workdir.glob("tiny/logs/*/finetune-tiny-lima.log")) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.2)
    assert list(workdir.glob("tiny/logs/*/finetune-tiny-lima.log")), "the finetune step never started"
    steps: list = []
    while not any("finetune" in " ".join(step.cmdline()) for step in steps) and time.time() < deadline:
        steps = psutil.Process(proc.pid).children(recursive=True)  # its rank, once the launcher has started it
        time.sleep(0.1)
    assert any("finetune" in " ".join(step.cmdline()) for step in steps), [s.cmdline() for s in steps]
    os.killpg(proc.pid, signal.SIGKILL)  # a crash, the moment the finetune runs: no cleanup runs in the backend
    proc.wait()
    alive = still_running(steps, timeout=20)
    assert not alive, f"step processes outlived limit run: {[p.cmdline() for p in alive]}"
    manifests = {p.parent.parent.name for p in (workdir / "artifacts").rglob("_manifest.json")}
    assert "prepare" in manifests and "finetune" not in manifests, "the orphaned finetune never committed"

    result = limit_run("tiny", workdir)
    assert result.returncode == 0, result.stdout[-3000:]
    reused = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("reuse ")]
    assert "prepare-lima" in reused
    assert not any(line.startswith("run    prepare-lima") for line in result.stdout.splitlines())
    assert not list((workdir / "artifacts").rglob("*.partial"))
    assert report_section(result) == report_section(tiny_run[1])
    _, runs = study_runs(workdir)
    killed = min((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    assert killed.info.status == "KILLED", "the killed execution's parent run is not left RUNNING"
    assert not [r for r in runs if r.info.status == "RUNNING"]


def report_section(result: subprocess.CompletedProcess) -> str:
    return result.stdout[result.stdout.index("## Eval Gauntlet") : result.stdout.index("\nreport: ")]


def longer_first(instruction: str, shown_1: str, shown_2: str) -> Reply:
    return Reply(FIRST_WINS if len(shown_1) >= len(shown_2) else SECOND_WINS)


def made_up_release(folder: Path, pairs: int = 8) -> Path:
    """A folder shaped like the authors' release (`<size>_models/<prompts>_prompts/*.json`), GPT-4-0613
    preferring either side in turn, so that the test needs no ../shared."""
    rows = [
        {"instruction": f"Released question {i}?", "output_1": f"one {i}", "output_2": f"two {i}"}
        | {"preference": 1 + i % 2}
        for i in range(pairs)
    ]
    (folder / "7b_models" / "lima_prompts").mkdir(parents=True)
    (folder / "7b_models" / "lima_prompts" / "a_vs_b_seed1.json").write_text(json.dumps(rows))
    return folder


def test_s3_artifact_root_and_an_api_judge_calibrated_on_the_release(tmp_path, s3_env):
    """The mini study on S3 with an OpenAI-protocol judge on 127.0.0.1 that replays GPT-4-0613 on a release
    (`judge.calibrate`; any other pair: the longer answer wins): every step's outputs in the bucket, the
    calibrate step's too, and the report's calibration section with kappa 1."""
    import boto3

    release = made_up_release(tmp_path / "release")
    workdir = tmp_path / "runs"
    with ReplayJudgeServer(calibration_set(release, 8, seed=0), fallback=longer_first) as server:
        judge = {"backend": "openai", "base_url": server.base_url, "bootstrap": 200, "max_retries": 1}
        judge |= {"retry_wait": 0, "calibrate": 8, "calibration_release": str(release)}
        study = mini_study(tmp_path, judge)
        result = limit_run(str(study), workdir, "--artifacts", f"s3://{s3_env}/studies", OPENAI_API_KEY="test-key")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert server.missing == 0 and server.unparsed == 0
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_env) for o in page["Contents"]]
    plan = build_plan(load_study(str(study)))
    for step in plan.order():
        assert f"studies/{step.ref}/_manifest.json" in keys, step.id
    report = next(s for s in plan.order() if s.kind == "report")
    assert f"studies/{report.ref}/report.json" in keys
    assert not (workdir / "artifacts").exists(), "nothing was written to the local artifact root"
    calibration = json.loads((workdir / "mini" / "report.json").read_text())["calibration"]
    assert calibration["status"] == "ready" and (calibration["pairs"], calibration["failures"]) == (8, 0)
    assert calibration["kappa"] == calibration["agreement"] == 1.0 and calibration["kappa_ci95"] == [1.0, 1.0]
    assert "## Judge calibration" in (workdir / "mini" / "report.md").read_text()


def test_sigterm_stops_every_step_marks_the_parent_killed_and_a_rerun_resumes(tmp_path):
    import psutil

    study = mini_study(tmp_path)
    spec = yaml.safe_load(study.read_text())
    spec["training"]["defaults"]["epochs"] = 3  # a finetune that outlasts a heartbeat or two (steps start warm)
    study.write_text(yaml.safe_dump(spec, sort_keys=False))
    workdir, console = tmp_path / "runs", tmp_path / "console.txt"
    with console.open("w") as fh:
        proc = limit_popen(
            str(study), workdir, popen={"stdout": fh, "stderr": subprocess.STDOUT}, LIMIT_HEARTBEAT_S="1"
        )

    def heartbeat_with_progress() -> bool:  # the backend's line for the running finetune, with the trainer's step
        lines = console.read_text().splitlines()
        return any(line.startswith("...    finetune-tiny-lima") and "step " in line for line in lines)

    deadline = time.time() + 600
    while not heartbeat_with_progress() and time.time() < deadline:
        assert proc.poll() is None, console.read_text()
        time.sleep(0.2)
    steps = psutil.Process(proc.pid).children(recursive=True)
    assert steps, "step processes are running"
    proc.send_signal(signal.SIGTERM)  # to `limit run` alone, as a process manager or `kill` would
    proc.wait(timeout=120)
    out = console.read_text()
    assert proc.returncode == 130, out
    assert "stop   finetune-tiny-lima" in out and "KILLED" in out
    assert "...    finetune-tiny-lima" in out and "step " in out  # a heartbeat with the trainer's progress
    gone, alive = psutil.wait_procs(steps, timeout=10)
    assert not alive, f"step processes left running: {alive}"

    _, runs = study_runs(workdir, "mini")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "KILLED"
    finetune = next(r for r in runs if r.data.tags.get("limit.kind") == "finetune")
    assert finetune.info.status == "KILLED"

    argv = [sys.executable, "-m", "limit.cli", "status", str(study), "--workdir", str(workdir)]
    status = subprocess.run(argv, capture_output=True, text=True, env=work_env(workdir), timeout=300)
    assert re.search(r"killed +finetune-tiny-lima", status.stdout), status.stdout

    result = limit_run(str(study), workdir)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (workdir / "mini" / "report.json").is_file()


def test_s3_unreachable_mid_run_stops_every_step_exits_75_and_marks_the_parent_failed(tmp_path, monkeypatch):
    """Not a signal but an error inside `limit run` itself: its store's endpoint goes away while steps run."""
    import boto3
    import psutil
    from conftest import free_port
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)  # this test's own endpoint, to stop
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in creds.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="gone")
    study, workdir = mini_study(tmp_path), tmp_path / "runs"
    proc = limit_popen(
        str(study),
        workdir,
        "--artifacts",
        "s3://gone/x",
        popen={"stderr": subprocess.STDOUT},
        AWS_ENDPOINT_URL=endpoint,
        **creds,
    )
    deadline = time.time() + 300
    while not list((workdir / "mini" / "logs").glob("*/*.log")) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    steps = psutil.Process(proc.pid).children(recursive=True)
    server.stop()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 75, out
    assert "Traceback" not in out.split("logs:")[0].split("last lines of")[0], out
    assert "limit: unavailable (worth retrying): limit run stopped: EndpointConnectionError" in out, out
    _, alive = psutil.wait_procs(steps, timeout=10)
    assert not alive, f"step processes left running: {alive}"
    _, runs = study_runs(workdir, "mini")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FAILED"
