"""The Helm chart renders (Helm's own engine, embedded in helm-python-sdk) with default and non-default
values; every object validates against the Kubernetes schemas; pods run non-root; RBAC stays narrow."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from limit.backends.profile import load_profile

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "limit"
KUBERNETES = "1.37.0"

ARGO_SERVER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "argo"}},
               "podSelector": {"matchLabels": {"app": "argo-server"}}}  # fmt: skip
NON_DEFAULT = {
    "prefix": "lim",
    "image": {"digest": "sha256:" + "1" * 64},
    "imagePullSecrets": [{"name": "regcred"}],
    "workflow": {"serviceAccountAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/limit"}},
    "submitter": {"enabled": True, "createToken": True},
    "s3": {
        "create": True,
        "accessKey": "workflows",
        "secretKey": "workflows-secret",
        "bucket": "studies",
        "region": "eu-west-1",
    },
    "judge": {"create": True, "apiKey": "sk-test"},
    "semaphores": {"gpuPods": 8},
    "mlflow": {
        "backend": "postgres",
        "postgres": {"uriSecret": "mlflow-db"},
        "auth": {
            "create": True,
            **{"username": "admin", "password": "twelve-chars", "flaskSecretKey": "k"},
            "workflowUser": {"create": True, "username": "workflows", "password": "wf-password"},
        },
    },
    "minio": {
        "enabled": True,
        "persistence": {"enabled": True, "storageClass": "standard"},
        "root": {"create": True, "user": "root", "password": "root-password"},
    },
    "networkPolicy": {
        "mlflowFrom": [{"namespaceSelector": {"matchLabels": {"team": "ml"}}}],
        "minioFrom": [ARGO_SERVER],
    },
}
KIND_VALUES = yaml.safe_load((REPO / "tests" / "e2e" / "values-kind.yaml").read_text())


def render(values: dict, chart_dir: Path = CHART) -> list[dict]:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (a test dependency) embeds Helm")
    chart = helm.Chart.load(str(chart_dir))
    rendered = chart.render(values, name="limit", namespace="limit", is_install=True)
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


CASES = {"default": {}, "non-default": NON_DEFAULT, "kind-e2e": KIND_VALUES}


@pytest.fixture(scope="module", params=list(CASES))
def objects(request) -> list[dict]:
    return render(CASES[request.param])


def test_chart_lints_clean() -> None:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (a test dependency) embeds Helm")
    report = helm.lint(str(CHART), NON_DEFAULT, strict=True, namespace="limit")
    assert not [m for m in report["messages"] if m["severity"] >= 2]


def test_chart_installs_from_a_fresh_clone(tmp_path: Path) -> None:
    """`helm install` refuses a chart whose dependencies are missing from charts/, optional ones too: the
    chart declares none, so a clone (no charts/limit/charts/, no `helm dependency build`) installs."""
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (a test dependency) embeds Helm")
    assert "dependencies" not in yaml.safe_load((CHART / "Chart.yaml").read_text())
    clone = tmp_path / "limit"
    shutil.copytree(CHART, clone, ignore=shutil.ignore_patterns("charts", "Chart.lock", "*.tgz"))
    assert not [m for m in helm.lint(str(clone), {}, strict=True, namespace="limit")["messages"] if m["severity"] >= 2]
    assert {o["kind"] for o in render({}, clone)} >= {"Deployment", "Service", "Role"}


def test_every_object_validates(objects: list[dict]) -> None:
    import kubernetes_validate

    kinds = {obj["kind"] for obj in objects}
    assert {"ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service"} <= kinds, kinds
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)  # raises on an invalid object


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            specs.append((obj["metadata"]["name"], obj["spec"]["template"]["spec"]))
    return specs


def test_pods_run_non_root_on_a_read_only_root(objects: list[dict]) -> None:
    assert pod_specs(objects)
    for name, spec in pod_specs(objects):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, name


def test_the_project_image_is_pulled_by_digest_when_given() -> None:
    images = {c["image"] for _, spec in pod_specs(render(NON_DEFAULT)) for c in spec["containers"]}
    assert f"limit-cpu@sha256:{'1' * 64}" in images and not any(i.startswith("limit-cpu:") for i in images)


def test_rbac_is_namespaced_and_never_wildcard(objects: list[dict]) -> None:
    kinds = {obj["kind"] for obj in objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    roles = [obj for obj in objects if obj["kind"] == "Role"]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"{role['metadata']['name']}: {field} grants *"


def test_workflow_role_is_what_the_executor_needs() -> None:
    [role] = [o for o in render({}) if o["kind"] == "Role"]
    grants = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert grants == {("workflowtaskresults", "create"), ("workflowtaskresults", "patch")}  # Argo >= 3.4's emissary


def test_mlflow_accepts_in_cluster_host_names() -> None:
    [deploy] = [o for o in render({}) if o["kind"] == "Deployment" and o["metadata"]["name"] == "limit-mlflow"]
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    allowed = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert {"limit-mlflow:5000", "limit-mlflow.limit.svc.cluster.local:5000"} <= set(allowed)
    assert any(a.startswith("--artifacts-destination=s3://") for a in args)


def test_minio_image_is_pinned_by_digest() -> None:
    [deploy] = [o for o in render(KIND_VALUES) if o["kind"] == "Deployment" and "minio" in o["metadata"]["name"]]
    assert "@sha256:" in deploy["spec"]["template"]["spec"]["containers"][0]["image"]


def secret_refs(obj: dict) -> set[str]:
    """Every Secret an object's pods read (env, envFrom, volumes) or a ConfigMap names (the artifact repository)."""
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            for field in ("secretKeyRef", "secretRef", "accessKeySecret", "secretKeySecret"):
                if isinstance(node.get(field), dict):
                    found.add(node[field]["name"])
            if isinstance(node.get("secret"), dict):
                found.add(node["secret"]["secretName"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str) and "accessKeySecret" in node:  # the artifact repository is YAML in a string
            walk(yaml.safe_load(node))

    walk(obj)
    return found


def test_minios_root_user_is_read_by_minio_and_its_setup_job_only() -> None:
    objects = render(KIND_VALUES)
    readers = {o["metadata"]["name"] for o in objects if "limit-minio-root" in secret_refs(o)}
    assert readers == {"limit-minio", "limit-minio-bucket"}
    profile = load_profile("kind")
    assert profile.s3_credentials.secret == "limit-s3" != "limit-minio-root"
    for name in ("limit-mlflow", "artifact-repositories"):  # MLflow's artifact proxy, Argo's log archiving
        [obj] = [o for o in objects if o["metadata"]["name"] == name and o["kind"] in ("Deployment", "ConfigMap")]
        assert secret_refs(obj) == {"limit-s3"}, name
    root = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}["limit-minio-root"]["stringData"]
    assert root["rootUser"] != KIND_VALUES["s3"]["accessKey"]


def test_the_workflow_minio_user_may_use_the_bucket_only() -> None:
    [job] = [o for o in render(NON_DEFAULT) if o["kind"] == "Job" and o["metadata"]["name"] == "lim-minio-bucket"]
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["WORKFLOW_USER"]["valueFrom"]["secretKeyRef"] == {"name": "lim-s3", "key": "accessKey"}
    assert env["MINIO_ROOT_USER"]["valueFrom"]["secretKeyRef"]["name"] == "lim-minio-root"
    policy = json.loads(env["POLICY"]["value"])
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    assert resources == {"arn:aws:s3:::studies", "arn:aws:s3:::studies/*"}
    actions = {a for statement in policy["Statement"] for a in statement["Action"]}
    assert all(a.startswith("s3:") and "*" not in a for a in actions) and "s3:CreateBucket" not in actions
    script = container["args"][0]
    assert 'mc admin user add local "$WORKFLOW_USER"' in script and '--user "$WORKFLOW_USER"' in script
    assert "@sha256:" in container["image"]  # MinIO's own pinned image, which ships mc


def test_minio_refuses_the_workflow_user_as_root() -> None:
    same = {
        "minio": {**NON_DEFAULT["minio"], "root": {"create": True, "user": "workflows", "password": "root-password"}}
    }
    with pytest.raises(Exception, match="must not be MinIO's root user"):
        render({**NON_DEFAULT, **same})


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"root": {"create": True, "user": "root", "password": "short"}}, "root password under 8"),
        ({"s3": {"create": True, "accessKey": "workflows", "secretKey": "short"}}, "secret key under 8"),
        ({"s3": {"create": True, "accessKey": "wf", "secretKey": "long-enough"}}, "user under 3"),
    ],
)
def test_minio_credentials_it_would_refuse_fail_the_render(edit: dict, message: str) -> None:
    """MinIO would refuse them at start or in its setup Job, a hook `helm install` would wait on for minutes."""
    values = {**NON_DEFAULT, "s3": {**NON_DEFAULT["s3"], **edit.get("s3", {})}}
    values["minio"] = {**NON_DEFAULT["minio"], **({"root": edit["root"]} if "root" in edit else {})}
    with pytest.raises(Exception, match=message):
        render(values)


def test_the_gpu_profile_plans_with_the_charts_default_semaphore() -> None:
    """`limit plan --summary`'s wall-clock time assumes as many GPU pods at once as the chart allows."""
    profile = load_profile("gpu")
    [semaphores] = [o for o in render({}) if o["metadata"]["name"] == profile.gpu_semaphore.configmap]
    assert semaphores["data"][profile.gpu_semaphore.key] == str(profile.gpu_semaphore.pods)


def test_kind_profile_names_what_the_chart_creates() -> None:
    """The e2e submits with the kind profile into the namespace the chart set up with its values."""
    profile = load_profile("kind")
    objects = render(KIND_VALUES)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("ServiceAccount", profile.service_account) in names
    assert ("Secret", profile.s3_credentials.secret) in names
    assert ("ConfigMap", profile.gpu_semaphore.configmap) in names
    assert ("ConfigMap", profile.artifact_repository.configmap) in names
    mlflow_host = profile.mlflow_uri.removeprefix("http://").split(":")[0]
    s3_host = profile.s3_endpoint.removeprefix("http://").split(":")[0]
    assert {("Service", mlflow_host), ("Service", s3_host)} <= names
    [semaphores] = [o for o in objects if o["metadata"]["name"] == profile.gpu_semaphore.configmap]
    assert semaphores["data"][profile.gpu_semaphore.key] == str(profile.gpu_semaphore.pods)  # the planner's count
    [repo] = [o for o in objects if o["metadata"]["name"] == profile.artifact_repository.configmap]
    assert profile.artifact_repository.key in repo["data"]
    assert profile.artifacts.startswith(f"s3://{KIND_VALUES['s3']['bucket']}/")


def mlflow_container(values: dict) -> dict:
    [deploy] = [o for o in render(values) if o["kind"] == "Deployment" and o["metadata"]["name"] == "limit-mlflow"]
    return deploy["spec"]["template"]["spec"]["containers"][0]


def test_mlflow_runs_one_sqlite_worker_without_job_execution() -> None:
    container = mlflow_container({})
    assert "--workers=1" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert "initialDelaySeconds" not in container["livenessProbe"]  # the startup probe holds it back
    assert container["resources"]["limits"]["memory"]


def test_mlflow_on_postgres_runs_two_workers_and_sqlite_refuses_more_than_one() -> None:
    postgres = {"mlflow": {"backend": "postgres", "postgres": {"uriSecret": "mlflow-db"}}}
    assert "--workers=2" in mlflow_container(postgres)["args"]
    with pytest.raises(Exception, match="database is locked"):
        render({"mlflow": {"workers": 3}})


def test_the_charts_mlflow_server_stays_under_its_memory_limit(tmp_path: Path) -> None:
    """The chart's own command, flags and environment (what `make e2e-local` runs), under the chart's memory
    limit: with MLflow's job runner on, the same server passes the old 2Gi limit and its pod crash-loops."""
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from chart_mlflow import MemoryWatchdog, local_server, memory_limit, rendered_container
    from conftest import free_port

    container, port = rendered_container(), free_port()
    secrets = {"limit-s3": {"accessKey": "a", "secretKey": "b"}}
    argv, env = local_server(container, port, tmp_path / "mlflow.db", "http://127.0.0.1:9", secrets)
    server = subprocess.Popen(argv, env=_server_env(env, tmp_path), start_new_session=True,
                              stdout=(tmp_path / "mlflow.log").open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    watchdog = MemoryWatchdog(server.pid, memory_limit(container), every_s=0.2)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", watchdog)
        time.sleep(3)  # the job runner, were it on, would be starting its processes now
    finally:
        watchdog.stop()
        server.kill()
        server.wait()
    assert not watchdog.exceeded, watchdog.exceeded
    assert watchdog.peak_processes <= 3, watchdog.peak_processes  # the CLI, uvicorn's supervisor, one worker


def _server_env(env: dict[str, str], home: Path) -> dict[str, str]:
    """The chart container's environment, on this interpreter (its PATH and import path: the tested packages)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    imports = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    return {**env, **imports, "PATH": path, "HOME": str(home)}


def _wait_healthy(url: str, watchdog) -> None:
    for _ in range(120):
        assert not watchdog.exceeded, watchdog.exceeded
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5)
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the chart's MLflow server never answered {url}/health")


# ---------------------------------------------------------------- NetworkPolicy


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions) applied to a pod's labels, as Kubernetes applies it."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    tests = {
        "In": lambda e: labels.get(e["key"]) in e["values"],
        "NotIn": lambda e: labels.get(e["key"]) not in e["values"],
        "Exists": lambda e: e["key"] in labels,
        "DoesNotExist": lambda e: e["key"] not in labels,
    }
    return all(tests[e["operator"]](e) for e in selector.get("matchExpressions", []))


def admits(policy: dict, labels: dict[str, str]) -> bool:
    """Whether a pod of the policy's namespace with these labels may connect to the pods the policy selects."""
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]
    return any(set(peer) == {"podSelector"} and selects(peer["podSelector"], labels) for peer in peers)


def pod_labels(objects: list[dict], name: str) -> dict[str, str]:
    [obj] = [o for o in objects if o["kind"] in ("Deployment", "Job") and o["metadata"]["name"] == name]
    return obj["spec"]["template"]["metadata"]["labels"]


WORKFLOW_POD = {"workflows.argoproj.io/workflow": "limit-tiny-x7k2q", "limit/study": "tiny"}  # Argo labels each pod


def test_only_workflow_pods_mlflow_and_the_bucket_job_reach_mlflow_and_minio() -> None:
    objects = render(NON_DEFAULT)
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    assert set(policies) == {"lim-mlflow", "lim-minio", "lim-workflow-egress"}
    mlflow, minio = policies["lim-mlflow"], policies["lim-minio"]
    assert selects(mlflow["spec"]["podSelector"], pod_labels(objects, "lim-mlflow"))
    assert selects(minio["spec"]["podSelector"], pod_labels(objects, "lim-minio"))
    for policy in (mlflow, minio):
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert admits(policy, WORKFLOW_POD)
        assert not admits(policy, {"app": "something-else"})
        assert not admits(policy, {})
    assert admits(minio, pod_labels(objects, "lim-mlflow"))  # it proxies artifacts to the bucket
    assert admits(minio, pod_labels(objects, "lim-minio-bucket"))
    assert not admits(mlflow, pod_labels(objects, "lim-minio-bucket"))
    assert admits(mlflow, pod_labels(objects, "lim-mlflow-users"))  # it makes the workflow user
    assert {"namespaceSelector": {"matchLabels": {"team": "ml"}}} in mlflow["spec"]["ingress"][0]["from"]
    assert ARGO_SERVER in minio["spec"]["ingress"][0]["from"]


def test_network_policies_allow_the_ports_the_services_serve() -> None:
    objects = render(NON_DEFAULT)
    for app in ("mlflow", "minio"):
        [policy] = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == f"lim-{app}"]
        [deploy] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == f"lim-{app}"]
        named = {p["name"] for c in deploy["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        assert ports and ports <= named, (ports, named)


def egress(objects: list[dict]) -> set[tuple[str, int, str]]:
    """(destination, port, protocol) of every egress the workflow pods' policy allows."""
    [policy] = [o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-egress")]
    assert selects(policy["spec"]["podSelector"], WORKFLOW_POD) and policy["spec"]["policyTypes"] == ["Egress"]
    assert not selects(policy["spec"]["podSelector"], {"app.kubernetes.io/name": "mlflow"})
    allowed = set()
    for rule in policy["spec"]["egress"]:
        assert rule.get("to") and rule.get("ports"), rule  # an empty `to` or `ports` would allow every one
        for peer in rule["to"]:
            name = json.dumps(peer, sort_keys=True)
            allowed |= {(name, port["port"], port["protocol"]) for port in rule["ports"]}
    return allowed


def ip(cidr: str, *excepted: str) -> str:
    return json.dumps({"ipBlock": {"cidr": cidr, **({"except": list(excepted)} if excepted else {})}}, sort_keys=True)


def app(name: str) -> str:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "limit"}
    return json.dumps({"podSelector": {"matchLabels": labels}}, sort_keys=True)


DNS = json.dumps({"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}, sort_keys=True)
DNS_PORTS = {(DNS, 53, "UDP"), (DNS, 53, "TCP")}


def test_workflow_pods_may_reach_exactly_the_configured_destinations() -> None:
    values = {
        "minio": {"enabled": True},
        "networkPolicy": {"egress": {
            "apiServer": {"cidrs": ["172.18.0.2/32"], "ports": [6443]},
            "judge": {"cidrs": ["162.159.140.0/24"]},
            "hub": {"cidrs": ["18.160.0.0/15"], "ports": [443, 80]},
            "publicHttps": {"cidrs": []},
        }},
    }  # fmt: skip
    assert egress(render(values)) == DNS_PORTS | {
        (app("mlflow"), 5000, "TCP"),
        (app("minio"), 9000, "TCP"),
        (ip("172.18.0.2/32"), 6443, "TCP"),
        (ip("162.159.140.0/24"), 443, "TCP"),
        (ip("18.160.0.0/15"), 443, "TCP"),
        (ip("18.160.0.0/15"), 80, "TCP"),
    }


def test_egress_defaults_reach_the_api_server_and_public_https_only_beyond_the_chart() -> None:
    private = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    public = ip("0.0.0.0/0", *private, "169.254.0.0/16", "100.64.0.0/10")
    api = {(ip(c), port, "TCP") for c in private for port in (443, 6443)}
    assert egress(render({})) == DNS_PORTS | api | {(app("mlflow"), 5000, "TCP"), (public, 443, "TCP")}
    external_s3 = {"networkPolicy": {"egress": {"s3": {"cidrs": ["52.216.0.0/15"]}, "publicHttps": {"cidrs": []}}}}
    assert egress(render(external_s3)) == DNS_PORTS | api | {
        (app("mlflow"), 5000, "TCP"),
        (ip("52.216.0.0/15"), 443, "TCP"),
    }
    no_mlflow = {"mlflow": {"enabled": False}, "networkPolicy": {"egress": {"publicHttps": {"cidrs": []}}}}
    assert egress(render(no_mlflow)) == DNS_PORTS | api


def test_egress_policy_follows_its_toggles() -> None:
    names = lambda values: {o["metadata"]["name"] for o in render(values) if o["kind"] == "NetworkPolicy"}  # noqa: E731
    assert "limit-workflow-egress" in names({})
    assert names({"networkPolicy": {"egress": {"enabled": False}}}) == {"limit-mlflow"}
    assert not names({"networkPolicy": {"enabled": False, "egress": {"enabled": True}}})
    extra = {"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}], "ports": [{"port": 5432, "protocol": "TCP"}]}
    assert (ip("10.1.2.3/32"), 5432, "TCP") in egress(render({"networkPolicy": {"egress": {"extra": [extra]}}}))


def test_network_policies_can_be_left_out() -> None:
    assert not [o for o in render({"networkPolicy": {"enabled": False}}) if o["kind"] == "NetworkPolicy"]
    assert not [o for o in render(KIND_VALUES) if o["kind"] == "NetworkPolicy"]  # see values-kind.yaml


# ---------------------------------------------------------------- MLflow basic auth


def test_mlflow_basic_auth_is_on_by_default_and_off_for_kind() -> None:
    container = mlflow_container({})
    assert "--app-name=basic-auth" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    for var, key in (("MLFLOW_AUTH_ADMIN_USERNAME", "username"), ("MLFLOW_AUTH_ADMIN_PASSWORD", "password"),
                     ("MLFLOW_FLASK_SERVER_SECRET_KEY", "flaskSecretKey")):  # fmt: skip
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "limit-mlflow-auth", "key": key}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"].rsplit("/", 1)[0] in mounts
    [config] = [o for o in render({}) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "limit-mlflow-auth"]
    users = re.search(r"(?m)^database_uri = sqlite:///(/\S+)/basic_auth.db$", config["data"]["basic_auth.ini"])
    assert users and users.group(1) in mounts  # on the PersistentVolumeClaim: users survive a restart
    kind = mlflow_container(KIND_VALUES)
    assert "--app-name=basic-auth" not in kind["args"]
    assert not [e for e in kind["env"] if e["name"].startswith("MLFLOW_AUTH")]


def test_mlflow_auth_refuses_a_short_admin_password() -> None:
    with pytest.raises(Exception, match="under 12 characters"):
        render({"mlflow": {"auth": {"create": True, "username": "admin", "password": "short", "flaskSecretKey": "k"}}})


def test_mlflow_auth_keeps_its_users_on_a_volume_with_postgres_too() -> None:
    objects = render(NON_DEFAULT)
    assert ("PersistentVolumeClaim", "lim-mlflow") in {(o["kind"], o["metadata"]["name"]) for o in objects}
    [secret] = [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"] == "lim-mlflow-auth"]
    assert set(secret["stringData"]) == {"username", "password", "flaskSecretKey"}


def users_job(values: dict) -> dict:
    [job] = [o for o in render(values) if o["kind"] == "Job" and o["metadata"]["name"].endswith("-mlflow-users")]
    return job["spec"]["template"]["spec"]["containers"][0]


def test_gpu_profile_logs_in_as_the_charts_workflow_user_not_the_admin() -> None:
    creds = load_profile("gpu").mlflow_credentials
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in users_job({})["env"] if "valueFrom" in e}
    assert refs["WORKFLOW_USERNAME"] == {"name": creds.secret, "key": creds.username_key}
    assert refs["WORKFLOW_PASSWORD"] == {"name": creds.secret, "key": creds.password_key}
    admin = {e["valueFrom"]["secretKeyRef"]["name"] for e in mlflow_container({})["env"] if "valueFrom" in e}
    assert creds.secret not in admin and "limit-mlflow-auth" in admin
    assert load_profile("kind").mlflow_credentials is None
    assert not [o for o in render(KIND_VALUES) if o["metadata"]["name"].endswith("-mlflow-users")]  # auth off


def test_only_mlflow_and_its_users_job_read_the_admin_secret(objects: list[dict]) -> None:
    readers = {o["metadata"]["name"] for o in objects if any(n.endswith("-mlflow-auth") for n in secret_refs(o))}
    assert readers <= {"limit-mlflow", "limit-mlflow-users", "lim-mlflow", "lim-mlflow-users"}


def test_mlflow_refuses_the_admin_as_workflow_user() -> None:
    auth = {**NON_DEFAULT["mlflow"]["auth"], "workflowUser": {"create": True, "username": "admin", "password": "p"}}
    with pytest.raises(Exception, match="must not be the admin user"):
        render({**NON_DEFAULT, "mlflow": {**NON_DEFAULT["mlflow"], "auth": auth}})


def test_the_charts_mlflow_with_basic_auth_refuses_strangers_and_admits_the_profiles_user(tmp_path: Path) -> None:
    """The chart's own server command with basic auth on (its default), under its memory limit, and its users
    Job: a client with the variables a gpu-profile pod gets (the workflow user, not the admin) logs a run, one
    with a wrong password is refused, and the workflow user cannot make users."""
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from chart_mlflow import MemoryWatchdog, local_auth_config, local_server, memory_limit, rendered_container
    from conftest import free_port

    admin = {"username": "admin", "password": "a-long-s3cret-pw", "flaskSecretKey": "k"}
    workflow = {"username": "limit", "password": "another-s3cret"}
    secrets = {"limit-s3": {"accessKey": "a", "secretKey": "b"}, "limit-mlflow-auth": admin,
               "limit-mlflow-workflow": workflow}  # fmt: skip
    container, port = rendered_container({}), free_port()
    auth = local_auth_config({}, tmp_path / "basic_auth.db")
    argv, env = local_server(container, port, tmp_path / "mlflow.db", "http://127.0.0.1:9", secrets, auth)
    server = subprocess.Popen(argv, env=_server_env(env, tmp_path), start_new_session=True,
                              stdout=(tmp_path / "mlflow.log").open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    watchdog = MemoryWatchdog(server.pid, memory_limit(container), every_s=0.2)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, watchdog)  # /health needs no credentials: the kubelet's probes have none
        assert _status(f"{url}/api/2.0/mlflow/experiments/search?max_results=1") == 401
        for _ in range(2):  # the users Job, as a post-install and a post-upgrade hook: creates, then resets
            assert _run_users_job(url, secrets, tmp_path).returncode == 0
        creds = load_profile("gpu").mlflow_credentials
        as_pod = {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": secrets[creds.secret][creds.username_key],
                  "MLFLOW_TRACKING_PASSWORD": secrets[creds.secret][creds.password_key]}  # fmt: skip
        assert _log_a_run(as_pod, tmp_path).returncode == 0
        refused = _log_a_run({**as_pod, "MLFLOW_TRACKING_PASSWORD": "wrong"}, tmp_path)
        assert refused.returncode != 0 and "401" in refused.stderr
        as_admin = _run_users_job(url, {**secrets, "limit-mlflow-auth": {**admin, **workflow}}, tmp_path)
        assert as_admin.returncode != 0 and "must not be the admin" in as_admin.stderr
        impostor = _run_users_job(url, {**secrets, "limit-mlflow-auth": workflow,
                                        "limit-mlflow-workflow": {"username": "x", "password": "x-password"}},
                                  tmp_path)  # fmt: skip
        assert impostor.returncode != 0 and "403" in impostor.stderr  # the workflow user is no admin
    finally:
        watchdog.stop()
        server.kill()
        server.wait()
    assert not watchdog.exceeded, watchdog.exceeded


def _run_users_job(url: str, secrets: dict[str, dict[str, str]], tmp_path: Path) -> subprocess.CompletedProcess:
    """The chart's users Job (its script and environment, Secrets resolved) against the MLflow at `url`."""
    container = users_job({})
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    for var in (e for e in container["env"] if "valueFrom" in e):
        ref = var["valueFrom"]["secretKeyRef"]
        env[var["name"]] = secrets[ref["name"]][ref["key"]]
    env |= {"MLFLOW_TRACKING_URI": url, "HOME": str(tmp_path)}
    argv = [sys.executable, *container["command"][1:], *container["args"]]
    return subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def _status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def _log_a_run(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    code = (
        "import mlflow; mlflow.set_experiment('auth'); mlflow.start_run(); mlflow.log_metric('m', 1); mlflow.end_run()"
    )
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, "HOME": str(tmp_path), **env},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
