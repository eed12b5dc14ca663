"""The Argo manifests: every shipped study compiles, validates, matches its golden file, and runs in each
pod exactly the argv `limit plan` prints."""

from __future__ import annotations

import copy
import json
import re
import shutil
from functools import cache
from pathlib import Path

import golden
import pytest
import yaml

from limit.backends.argo import HOME_DIR, PARENT_TASK, build_workflow
from limit.backends.profile import load_profile
from limit.cli import main as limit_main
from limit.commands.manifest import render
from limit.plan import build_plan
from limit.spec.study import STUDIES_DIR, list_studies, load_study
from limit.steps import merged_input

STUDIES = list_studies()
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@cache
def manifest(study: str, profile: str = "gpu", template: bool = False) -> dict:
    return yaml.safe_load(render(study, profile, template=template))


def templates(doc: dict) -> dict[str, dict]:
    return {t["name"]: t for t in doc["spec"]["templates"]}


def dag_tasks(doc: dict) -> dict[str, dict]:
    dag = next(t for t in doc["spec"]["templates"] if "dag" in t)
    return {t["name"]: t for t in dag["dag"]["tasks"]}


def depends(task: dict) -> set[str]:
    return {d.strip() for d in task.get("depends", "").split("&&") if d.strip()}


def ancestors(tasks: dict[str, dict], name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(depends(tasks[name]))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(depends(tasks[dep]))
    return seen


def plan_argv(study: str, capsys: pytest.CaptureFixture) -> dict[str, list[str]]:
    """What `limit plan STUDY --json` prints: the argv of every step, by step id."""
    capsys.readouterr()
    assert limit_main(["plan", study, "--json"]) == 0
    return {s["id"]: s["argv"] for s in json.loads(capsys.readouterr().out)["steps"]}


def pod_argv(task: dict, template: dict) -> list[str]:
    """The container args a task's pod runs: its template's, with the task's parameters substituted."""
    values = {p["name"]: p["value"] for p in task["arguments"]["parameters"]}
    return [
        re.sub(r"\{\{inputs\.parameters\.([\w-]+)\}\}", lambda m: values[m.group(1)], a)
        for a in template["container"]["args"]
    ]


@pytest.mark.parametrize("study", STUDIES)
def test_each_pod_runs_what_limit_plan_prints(study: str, capsys: pytest.CaptureFixture) -> None:
    """The same command, key and input (after merging the template's shared fields) as the plan's argv."""
    argv = plan_argv(study, capsys)
    doc = manifest(study)
    tasks, temps = dag_tasks(doc), templates(doc)
    assert set(tasks) - {PARENT_TASK} == set(argv), "one DAG task per plan step"
    for step_id, expected in argv.items():
        pod = pod_argv(tasks[step_id], temps[tasks[step_id]["template"]])
        assert pod[:5] == expected[:5], step_id  # limit step KIND --key KEY
        base = pod[pod.index("--input-base") + 1] if "--input-base" in pod else None
        merged = json.loads(merged_input(pod[pod.index("--input") + 1], base))
        assert merged == json.loads(expected[expected.index("--input") + 1]), step_id


def sweep_spec(runs: int) -> dict:
    """A synthetic sweep on the tiny study: `runs` seeded subsets, each finetuned and judged against the base."""
    spec = yaml.safe_load((REPO / "workflows" / "studies" / "tiny.yaml").read_text())
    spec["name"] = "sweep"
    spec["training"]["defaults"]["epochs"] = 5
    for i in range(runs):
        spec["datasets"][f"v1-{i}"] = {"subset": {"of": "instruct-v1", "sample": 24, "seed": i}}
    spec["runs"] = [{"name": f"r{i}", "model": "tiny-mpt", "dataset": f"v1-{i}"} for i in range(runs)]
    spec["pairs"] = [{"a": f"r{i}", "b": "tiny-mpt", "prompts": "tiny-test"} for i in range(runs)]
    return spec


def test_a_thousand_step_sweep_stays_far_below_etcds_limit(tmp_path: Path) -> None:
    """Argo keeps a Workflow in one etcd object (1.5 MB): a template per step kind (and resources), each task
    carrying only its key and the input fields its template does not share."""
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep_spec(100)))
    plan = build_plan(load_study(str(path)))
    assert len(plan.steps) > 1000
    text = build_workflow(plan, load_profile("kind")).to_yaml()
    doc = yaml.safe_load(text)
    containers = [t for t in doc["spec"]["templates"] if "container" in t]
    assert len(containers) <= 2 + 2 * len({s.kind for s in plan.order()})
    assert len(text) / len(plan.steps) < 600 and len(text) < 750_000  # bytes per step; half of etcd's limit


def test_full_manifest_is_a_fraction_of_its_size_per_step() -> None:
    plan = build_plan(load_study("full"))
    assert len(render("full", "gpu")) / len(plan.steps) < 1000


@pytest.mark.parametrize("study", STUDIES)
@pytest.mark.parametrize("template", [False, True])
def test_round_trips_through_hera_models(study: str, template: bool) -> None:
    from hera.workflows import Workflow, WorkflowTemplate

    kind = WorkflowTemplate if template else Workflow
    text = render(study, "gpu", template=template)
    assert kind.from_yaml(text).to_yaml() == text
    assert yaml.safe_load(text)["kind"] == kind.__name__


@pytest.fixture(scope="module")
def argo_schema() -> dict:
    path = SHARED / "argo" / "workflow-schema.json"
    if not path.is_file():
        pytest.skip(f"{path} is absent: it holds Argo's Workflow JSON schema (see ../shared/argo/SOURCE.md)")
    schema = json.loads(path.read_text())
    # Kubernetes and Argo accept integers where the schema says IntOrString is a string (SOURCE.md).
    schema["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["string", "integer"]}
    return schema


@pytest.mark.parametrize(("study", "profile"), [(s, "gpu") for s in STUDIES] + [("tiny", "kind")])
def test_validates_against_argo_schema(study: str, profile: str, argo_schema: dict) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(argo_schema)
    for template in (False, True):
        doc = manifest(study, profile, template)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{study}/{profile}: {errors[0].message} at {list(errors[0].absolute_path)}"


def test_schema_check_catches_a_broken_manifest(argo_schema: dict) -> None:
    import jsonschema

    doc = copy.deepcopy(manifest("tiny", "kind"))
    doc["spec"]["templates"][0]["container"]["args"] = "limit step"  # a string, not a list
    assert list(jsonschema.Draft202012Validator(argo_schema).iter_errors(doc))


@pytest.mark.parametrize("study", sorted(golden.PROFILES))
def test_golden_manifest_matches(study: str) -> None:
    path = golden.path(study)
    assert path.is_file(), f"{path} is missing: run `make golden`"
    expected = render(study, golden.PROFILES[study])
    assert path.read_text() == expected, (
        f"{path} differs from `limit manifest {study} --profile {golden.PROFILES[study]}`: "
        "if the change is intended, run `make golden` and review the diff"
    )


def test_full_structure() -> None:
    study = load_study("full")
    plan = build_plan(study)
    doc = manifest("full")
    tasks, temps = dag_tasks(doc), templates(doc)

    finetunes = {name: t for name, t in tasks.items() if name.startswith("finetune-")}
    assert len(finetunes) == len(study.runs)
    for run in study.runs:
        step = next(s for s in plan.by_kind("finetune") if s.input.tags["run"] == run.run_name)
        resources = temps[tasks[step.id]["template"]]["container"]["resources"]
        gpus = str(study.train_spec(run).gpus)
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == gpus
        template = temps[tasks[step.id]["template"]]
        assert template["synchronization"]["semaphores"][0]["configMapKeyRef"]["key"] == "gpu-pods"

    producers = {s.ref: s.id for s in plan.order()}
    for step in plan.by_kind("gauntlet"):
        if step.input.finetune:
            assert producers[step.input.finetune] in depends(tasks[step.id]), step.id

    # Every task depends directly on each step whose output it reads (refs in its --input JSON).
    for step in plan.order():
        read = {producers[v] for v in _strings(step.input.model_dump(mode="json")) if v in producers}
        assert read <= depends(tasks[step.id]), f"{step.id} reads {read - depends(tasks[step.id])}"
    report = depends(tasks["report"])
    assert {s.id for s in plan.by_kind("judge") + plan.by_kind("select")} <= report
    assert len(plan.by_kind("judge")) == len(study.pairs)


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


REF = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


@pytest.mark.parametrize("study", STUDIES)
def test_no_dangling_parameter_references(study: str) -> None:
    doc = manifest(study)
    tasks, temps = dag_tasks(doc), templates(doc)
    outputs = {name: {p["name"] for p in t.get("outputs", {}).get("parameters", [])} for name, t in temps.items()}
    globals_ = {
        p["globalName"] for t in temps.values() for p in t.get("outputs", {}).get("parameters", []) if "globalName" in p
    }

    for name, template in temps.items():
        declared = {p["name"] for p in template.get("inputs", {}).get("parameters", [])}
        for ref in REF.findall(json.dumps(template.get("container", {}))):
            if ref.startswith("inputs.parameters."):
                assert ref.removeprefix("inputs.parameters.") in declared, f"{name}: {ref}"
            elif ref.startswith("workflow.outputs.parameters."):
                assert ref.removeprefix("workflow.outputs.parameters.") in globals_, f"{name}: {ref}"
            else:
                assert ref in ("workflow.name", "workflow.status"), f"{name}: unexpected {{{{{ref}}}}}"

    for name, task in tasks.items():
        given = {p["name"] for p in task.get("arguments", {}).get("parameters", [])}
        wanted = {p["name"] for p in temps[task["template"]].get("inputs", {}).get("parameters", [])}
        assert given == wanted, f"{name}: arguments {given} for inputs {wanted}"
        for ref in REF.findall(json.dumps(task.get("arguments", {}))):
            source, _, param = ref.removeprefix("tasks.").partition(".outputs.parameters.")
            assert source in ancestors(tasks, name), f"{name} reads {source} without depending on it"
            assert param in outputs[tasks[source]["template"]], f"{name}: {ref}"
    assert doc["spec"]["onExit"] in temps


def test_profile_errors_name_file_and_field(tmp_path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**load_profile("kind").model_dump(), "artifacts": "/local/folder"}))
    assert limit_main(["manifest", "tiny", "--profile", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "artifacts" in err


def test_api_judge_needs_a_key_secret(capsys: pytest.CaptureFixture) -> None:
    """The full study's GPT-4 judge needs the key's Secret; the kind profile names none."""
    assert limit_main(["manifest", "full", "--profile", "kind"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "judge_api_key" in err


def test_plain_http_to_a_judge_host_needs_the_profile_to_name_it(tmp_path, capsys: pytest.CaptureFixture) -> None:
    """The judge's key would travel unencrypted: https, or a host the profile lists (an in-cluster server)."""
    data = yaml.safe_load((STUDIES_DIR / "full.yaml").read_text())
    data["judge"]["base_url"] = "http://judge.example:8000/v1"
    study = tmp_path / "full-http.yaml"
    study.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "wf.yaml"
    assert limit_main(["manifest", str(study), "--profile", "gpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "judge.base_url: plain http to judge.example" in err and not out.exists()
    profile = tmp_path / "gpu-http.yaml"
    profile.write_text(yaml.safe_dump({**load_profile("gpu").model_dump(), "judge_http_hosts": ["judge.example"]}))
    assert limit_main(["manifest", str(study), "--profile", str(profile), "--out", str(out)]) == 0


def test_workflow_settings_from_profile() -> None:
    profile = load_profile("kind")
    wf = build_workflow(build_plan(load_study("tiny")), profile).to_dict()
    spec = wf["spec"]
    assert spec["serviceAccountName"] == profile.service_account
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["archiveLogs"] is True and spec["podGC"]["strategy"] == profile.pod_gc
    step = next(t for t in spec["templates"] if t["name"] == "report")
    env = {e["name"]: e for e in step["container"]["env"]}
    assert env["LIMIT_ARTIFACTS"]["value"] == profile.artifacts
    assert env["AWS_ENDPOINT_URL"]["value"] == profile.s3_endpoint
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == profile.s3_credentials.secret
    assert env["LIMIT_PARENT_RUN_ID"]["value"] == "{{inputs.parameters.parent-run-id}}"
    assert step["retryStrategy"]["expression"] == "asInt(lastRetry.exitCode) != 2"


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["datasets"]["lima"]["source"].update(jsonl="data/lima.jsonl"), "datasets.lima.source.jsonl"),
        (lambda d: d["gauntlet"].update(data="gauntlet"), "gauntlet.data"),
        (lambda d: d["prompts"]["tiny-test"].update(jsonl="my_prompts.jsonl"), "prompts.tiny-test.jsonl"),
    ],
)
def test_a_study_reading_this_machines_disk_is_refused(tmp_path: Path, capsys, monkeypatch, edit, field: str) -> None:
    """Pods cannot read the submitting machine's files: refuse before anything runs, not after finetuning."""
    from limit.execution.locations import FIXTURES
    from limit.spec.study import STUDIES_DIR

    data = yaml.safe_load((STUDIES_DIR / "tiny.yaml").read_text())
    edit(data)
    shutil.copytree(FIXTURES / "gauntlet", tmp_path / "gauntlet")  # complete here, but not in a pod
    for path in ("data/lima.jsonl", "my_prompts.jsonl"):  # present here, so only the manifest refuses them
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text('{"conversations": ["q", "a"], "prompt": "q"}\n')
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    assert limit_main(["manifest", str(study), "--profile", "kind"]) == 2
    err = capsys.readouterr().err
    assert f"{field}: " in err and "pods cannot read" in err and err.count("\n") == 1


SECRETS_CASES = [(s, "gpu") for s in STUDIES] + [("tiny", "kind")]


def containers(doc: dict) -> dict[str, dict]:
    return {name: t["container"] for name, t in templates(doc).items() if "container" in t}


def pod_inputs(doc: dict) -> dict[str, tuple[str, dict]]:
    """Per step task: its template's name and the input its pod runs with (task part and template part merged)."""
    temps = templates(doc)
    found = {}
    for name, task in dag_tasks(doc).items():
        if name == PARENT_TASK:
            continue
        pod = pod_argv(task, temps[task["template"]])
        base = pod[pod.index("--input-base") + 1] if "--input-base" in pod else None
        found[name] = (task["template"], json.loads(merged_input(pod[pod.index("--input") + 1], base)))
    return found


def names_a_hub_id(value) -> bool:
    if isinstance(value, dict):
        return value.get("hf") is not None or any(names_a_hub_id(v) for v in value.values())
    return isinstance(value, list) and any(names_a_hub_id(v) for v in value)


@pytest.mark.parametrize(("study", "profile"), SECRETS_CASES)
def test_no_variable_is_defined_twice(study: str, profile: str) -> None:
    for name, container in containers(manifest(study, profile)).items():
        env = [e["name"] for e in container.get("env", [])]
        assert len(env) == len(set(env)), f"{name}: {sorted(e for e in env if env.count(e) > 1)}"


@pytest.mark.parametrize(("study", "profile"), SECRETS_CASES)
def test_each_pod_gets_only_the_secrets_its_step_uses(study: str, profile: str) -> None:
    """The judge key only in API-judge pods; the hub token only where the step's input names a hub id."""
    judge = load_study(study).judge
    cluster = load_profile(profile)
    doc = manifest(study, profile)
    for name, (template, inp) in pod_inputs(doc).items():
        container = containers(doc)[template]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "valueFrom" in e}
        kind = templates(doc)[template].get("metadata", {}).get("labels", {}).get("limit/kind")
        api_judge = kind == "judge" and judge.backend == "openai"
        assert (judge.api_key_env in refs) == api_judge, name
        if cluster.judge_api_key and not api_judge:
            assert cluster.judge_api_key.name not in refs.values(), name
        hub = cluster.hf_token is not None and names_a_hub_id(inp)
        assert ("HF_TOKEN" in refs) == hub, name


def test_the_full_study_reads_the_hub_where_expected() -> None:
    """Finetune epochs are read from S3: their gauntlet, select, judge and report pods hold no hub token."""
    doc = manifest("full")
    token = {n for n, c in containers(doc).items() if any(e["name"] == "HF_TOKEN" for e in c.get("env", []))}
    kinds = {n: t.get("metadata", {}).get("labels", {}).get("limit/kind") for n, t in templates(doc).items()}
    with_token = {task for task, (template, _) in pod_inputs(doc).items() if template in token}
    assert {kinds[n] for n in token} == {"prepare", "finetune", "gauntlet", "generate"}
    assert {t for t in with_token if t.startswith("gauntlet-")} == {"gauntlet-mpt-7b", "gauntlet-mpt-30b"}
    assert not any(kinds[n] in ("select", "judge", "report") for n in token)


@pytest.mark.parametrize(("study", "profile"), SECRETS_CASES)
def test_root_filesystem_is_read_only_and_written_paths_are_volumes(study: str, profile: str) -> None:
    """Every path a pod is told to write (work folder, outputs, HF cache, home) lies in one of its emptyDirs."""
    doc = manifest(study, profile)
    for name, container in containers(doc).items():
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/tmp", HOME_DIR} <= mounts, name
        assert {v["name"] for v in templates(doc)[name]["volumes"]} >= {m["name"] for m in container["volumeMounts"]}
        env = {e["name"]: e.get("value", "") for e in container["env"]}
        assert env["HOME"] == HOME_DIR, name
        for var, value in env.items():
            if value.startswith("/"):
                assert any(value == m or value.startswith(f"{m}/") for m in mounts), f"{name}: {var}={value}"


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_the_images_home_is_the_pods_home_volume(flavour: str) -> None:
    """The image's user (uid 1000) has HOME_DIR as home, and any cache folder it sets lies inside it."""
    text = (Path(__file__).resolve().parents[1] / "images" / f"{flavour}.Dockerfile").read_text()
    user = re.search(r"useradd [^\n]*--create-home[^\n]* (\w+)\s", text).group(1)
    assert f"/home/{user}" == HOME_DIR
    for path in re.findall(r"\b(?:HF_HOME|XDG_CACHE_HOME|TORCH_HOME)=(\S+)", text):
        assert path.startswith(f"{HOME_DIR}/"), path


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        ({"image": "registry.example.com/limit/limit-gpu:0.1.0"}, 2),
        ({"image": "registry.example.com/limit/limit-gpu:0.1.0", "allow_mutable_tag": True}, 0),
        ({"image": "limit-gpu:dev", "image_pull_policy": "Never"}, 0),  # kind: loaded, never pulled
        ({"image": f"registry.example.com/limit/limit-gpu:0.1.0@sha256:{'a' * 64}"}, 0),
        ({"image": "registry.example.com/limit/limit-gpu@sha256:abc"}, 2),
    ],
)
def test_profile_wants_the_image_by_digest(tmp_path, capsys: pytest.CaptureFixture, edit: dict, code: int) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({**load_profile("gpu").model_dump(mode="json", exclude_none=True), **edit}))
    assert limit_main(["manifest", "tiny", "--profile", str(path), "--out", str(tmp_path / "m.yaml")]) == code
    if code:
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{path}:" in err and " image: " in err and "mutable tag" in err


def test_shipped_gpu_profile_is_pinned_by_digest() -> None:
    assert re.search(r"@sha256:[0-9a-f]{64}$", load_profile("gpu").image)


@pytest.mark.parametrize(("study", "profile"), SECRETS_CASES)
def test_every_pod_logs_to_mlflow_as_the_profiles_user(study: str, profile: str) -> None:
    creds = load_profile(profile).mlflow_credentials
    for name, container in containers(manifest(study, profile)).items():
        env = {e["name"]: e for e in container["env"]}
        assert "MLFLOW_TRACKING_URI" in env, name
        for var, key in (("MLFLOW_TRACKING_USERNAME", "username_key"), ("MLFLOW_TRACKING_PASSWORD", "password_key")):
            if creds is None:
                assert var not in env, name
            else:
                ref = env[var]["valueFrom"]["secretKeyRef"]
                assert (ref["name"], ref["key"]) == (creds.secret, getattr(creds, key)), name


CHART_VALUES = {"gpu": {}, "kind": yaml.safe_load((REPO / "tests" / "e2e" / "values-kind.yaml").read_text())}


@pytest.mark.parametrize(("study", "profile"), [("full", "gpu"), ("tiny", "kind")])
def test_no_pod_holds_mlflows_admin_or_minios_root_user(study: str, profile: str) -> None:
    """The Secrets only the chart's MLflow, MinIO and their setup Jobs read: no workflow pod names one."""
    from test_chart import render as render_chart
    from test_chart import secret_refs

    chart = render_chart(CHART_VALUES[profile])
    pods = {o["metadata"]["name"]: secret_refs(o) for o in chart if o["kind"] in ("Deployment", "Job")}
    privileged = {"limit-mlflow-auth", "limit-minio-root"} & set().union(*pods.values())
    assert privileged == ({"limit-mlflow-auth"} if profile == "gpu" else {"limit-minio-root"})
    for name, container in containers(manifest(study, profile)).items():
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
        assert not refs & privileged, name


def test_report_and_select_pods_get_only_mlflow_and_s3() -> None:
    """No judge key, no hub token: a report or select step reads upstream outputs and logs, nothing more."""
    profile = load_profile("gpu")
    doc = manifest("full", "gpu")
    kinds = {n: t.get("metadata", {}).get("labels", {}).get("limit/kind") for n, t in templates(doc).items()}
    expected = {profile.mlflow_credentials.secret, profile.s3_credentials.secret}
    checked = 0
    for name, container in containers(doc).items():
        if kinds[name] in ("report", "select"):
            assert {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e} == expected
            checked += 1
    assert checked >= 2
