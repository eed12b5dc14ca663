"""The Helm chart renders (Helm's own engine, embedded in helm-python-sdk) with default and non-default
values; every object validates against the Kubernetes schemas; pods run non-root; RBAC stays narrow."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from workflows.profile import load_profile

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "limit"
KUBERNETES = "1.37.0"

NON_DEFAULT = {
    "prefix": "lim",
    "imagePullSecrets": [{"name": "regcred"}],
    "workflow": {"serviceAccountAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/limit"}},
    "submitter": {"enabled": True, "createToken": True},
    "s3": {"create": True, "accessKey": "a", "secretKey": "b", "bucket": "studies", "region": "eu-west-1"},
    "judge": {"create": True, "apiKey": "sk-test"},
    "semaphores": {"gpuPods": 8},
    "mlflow": {"backend": "postgres", "postgres": {"uriSecret": "mlflow-db"}},
    "minio": {"enabled": True, "persistence": {"enabled": True, "storageClass": "standard"}},
}
KIND_VALUES = yaml.safe_load((REPO / "tests" / "e2e" / "values-kind.yaml").read_text())


def render(values: dict) -> list[dict]:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (a test dependency) embeds Helm")
    chart = helm.Chart.load(str(CHART))
    rendered = chart.render(values, name="limit", namespace="limit", is_install=True)
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


CASES = {"default": {}, "non-default": NON_DEFAULT, "kind-e2e": KIND_VALUES}


@pytest.fixture(scope="module", params=list(CASES))
def objects(request) -> list[dict]:
    return render(CASES[request.param])


def test_chart_lints_clean() -> None:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (a test dependency) embeds Helm")
    report = helm.lint(str(CHART), NON_DEFAULT, strict=True, namespace="limit")
    # The optional Argo Workflows subchart is fetched by `helm dependency build` (needs the network).
    problems = [m for m in report["messages"] if m["severity"] >= 2 and "missing these dependencies" not in m["error"]]
    assert not problems


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


def test_pods_run_non_root(objects: list[dict]) -> None:
    assert pod_specs(objects)
    for name, spec in pod_specs(objects):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name


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
    assert grants == {
        ("workflowtaskresults", "create"),
        ("workflowtaskresults", "patch"),
        ("pods", "get"),
        ("pods", "watch"),
        ("pods", "patch"),
        ("pods/log", "get"),
    }


def test_mlflow_accepts_in_cluster_host_names() -> None:
    [deploy] = [o for o in render({}) if o["kind"] == "Deployment" and o["metadata"]["name"] == "limit-mlflow"]
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    allowed = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    assert {"limit-mlflow:5000", "limit-mlflow.limit.svc.cluster.local:5000"} <= set(allowed)
    assert any(a.startswith("--artifacts-destination=s3://") for a in args)


def test_minio_image_is_pinned_by_digest() -> None:
    [deploy] = [o for o in render(KIND_VALUES) if o["kind"] == "Deployment" and "minio" in o["metadata"]["name"]]
    assert "@sha256:" in deploy["spec"]["template"]["spec"]["containers"][0]["image"]


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
    assert profile.gpu_semaphore.key in semaphores["data"]
    [repo] = [o for o in objects if o["metadata"]["name"] == profile.artifact_repository.configmap]
    assert profile.artifact_repository.key in repo["data"]
    assert profile.artifacts.startswith(f"s3://{KIND_VALUES['s3']['bucket']}/")
