"""The kind e2e's waits (tests/e2e/cluster.py) without a cluster: pod classification on `kubectl get pods -o
json` lists (tests/e2e/fixtures, written to the Kubernetes Pod schema, which they are validated against, since
no cluster is at hand to record them), the wait loops through a stand-in `kubectl` executable, the Argo release
check against a local HTTP server, and what run.sh and the e2e workflow rely on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
E2E = REPO / "tests" / "e2e"
FIXTURES = E2E / "fixtures"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
sys.path.insert(0, str(E2E))

import cluster  # noqa: E402  (tests/e2e is a folder of scripts, not a package)


def pods(name: str) -> dict:
    return json.loads((FIXTURES / f"pods-{name}.json").read_text())


@pytest.mark.parametrize("fixture", sorted(p.stem for p in FIXTURES.glob("pods-*.json")))
def test_fixtures_are_valid_pods(fixture: str) -> None:
    import kubernetes_validate

    for pod in json.loads((FIXTURES / f"{fixture}.json").read_text())["items"]:
        kubernetes_validate.validate(pod, "1.37.0", strict=True)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("crashloop", [("limit-mlflow-5c6b7-q8w2e", "CrashLoopBackOff")]),
        ("never-pull", [("limit-tiny-abcde-prepare-lima-1234", "ErrImageNeverPull")]),
        ("unschedulable-idle", [("limit-tiny-abcde-finetune-tiny-lima-5678", "Unschedulable")]),
        ("unschedulable-busy", []),  # another step runs: its end frees the CPU this one waits for
        ("pull-backoff", []),  # a minute of ImagePullBackOff may still be a slow registry
        ("healthy", []),
    ],
)
def test_pods_that_can_never_run_are_named(fixture: str, expected: list[tuple[str, str]]) -> None:
    assert [(p.pod, p.reason) for p in cluster.pod_problems(pods(fixture), NOW)] == expected


def test_crashloop_line_says_why_the_container_last_died() -> None:
    [problem] = cluster.pod_problems(pods("crashloop"), NOW)
    assert "restarts 4, last exit OOMKilled" in problem.line()


def test_image_pull_backoff_is_fatal_after_its_grace() -> None:
    later = NOW + timedelta(seconds=cluster.WAITING_GRACE_S["ImagePullBackOff"])
    assert [p.reason for p in cluster.pod_problems(pods("pull-backoff"), later)] == ["ImagePullBackOff"]


def test_unschedulable_is_not_fatal_within_its_grace() -> None:
    early = datetime(2026, 11, 25, 11, 51, tzinfo=UTC)
    assert cluster.pod_problems(pods("unschedulable-idle"), early) == []


FAKE_KUBECTL = """#!{python}
# A stand-in kubectl: answers from files in $FAKE_KUBE; the first `get workflow` fails like a busy API server.
import json, os, sys
from pathlib import Path

root, args = Path(os.environ["FAKE_KUBE"]), sys.argv[1:]
calls = root / "calls.txt"
with calls.open("a") as f:
    f.write(" ".join(args) + "\\n")
if args[:2] == ["get", "workflow"]:
    n = sum(1 for line in calls.read_text().splitlines() if line.startswith("get workflow"))
    if n == 1:
        sys.exit("error: the server was unable to return a response in the time allotted")
    phases = json.loads((root / "phases.json").read_text())
    print(json.dumps({{"status": {{"phase": phases[min(n - 2, len(phases) - 1)], "progress": "1/2"}}}}))
elif args[:2] == ["get", "pods"]:
    print((root / "pods.json").read_text())
elif args[:2] == ["get", "events"]:
    print(json.dumps({{"items": [{{"type": "Warning", "reason": "BackOff", "message": "Back-off restarting"}}]}}))
elif args[:2] == ["rollout", "status"]:
    sys.exit(0 if (root / "rolled-out").exists() else 1)
"""


@pytest.fixture
def fake_kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.parent.mkdir()
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable))
    kubectl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{kubectl.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBE", str(tmp_path))
    shutil.copy(FIXTURES / "pods-healthy.json", tmp_path / "pods.json")
    return tmp_path


def wait(*argv: str) -> int:
    return cluster.main([*argv, "--timeout", "20", "--poll", "0"])


def test_workflow_wait_survives_a_failed_kubectl_call(fake_kube: Path) -> None:
    (fake_kube / "phases.json").write_text(json.dumps(["Running", "Running", "Succeeded"]))
    assert wait("workflow", "limit", "limit-tiny-abcde") == 0


def test_workflow_wait_ends_on_failure(fake_kube: Path, capsys: pytest.CaptureFixture) -> None:
    (fake_kube / "phases.json").write_text(json.dumps(["Running", "Failed"]))
    assert wait("workflow", "limit", "limit-tiny-abcde") == 1
    assert "workflow limit-tiny-abcde Failed" in capsys.readouterr().err


def test_workflow_wait_fails_fast_on_a_pod_that_cannot_run(fake_kube: Path, capsys: pytest.CaptureFixture) -> None:
    (fake_kube / "phases.json").write_text(json.dumps(["Running"]))
    shutil.copy(FIXTURES / "pods-never-pull.json", fake_kube / "pods.json")
    with pytest.raises(SystemExit) as e:
        wait("workflow", "limit", "limit-tiny-abcde")
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "pod limit-tiny-abcde-prepare-lima-1234: ErrImageNeverPull" in err
    assert "Warning BackOff: Back-off restarting" in err  # the pod's events


def test_rollout_waits_then_fails_fast_on_crashloop(fake_kube: Path) -> None:
    (fake_kube / "rolled-out").touch()
    assert wait("rollout", "limit", "limit-mlflow", "limit-minio") == 0
    (fake_kube / "rolled-out").unlink()
    shutil.copy(FIXTURES / "pods-crashloop.json", fake_kube / "pods.json")
    with pytest.raises(SystemExit):
        wait("rollout", "limit", "limit-mlflow")


class _Releases(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200 if "/v4.0.10/" in self.path else 404)
        self.end_headers()

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"kind: List\n")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def releases(monkeypatch: pytest.MonkeyPatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Releases)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/download/{{version}}/install.yaml"
    monkeypatch.setattr(cluster, "ARGO_MANIFEST", url)
    yield
    server.shutdown()


def test_argo_release_is_checked_before_use(releases, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "install.yaml"
    assert cluster.main(["argo-manifest", "--version", "v4.0.15", "--out", str(out)]) == 2
    assert "ARGO_VERSION=v4.0.15: no release manifest" in capsys.readouterr().err and not out.exists()
    assert cluster.main(["argo-manifest", "--out", str(out)]) == 0  # the pinned default
    assert out.read_text() == "kind: List\n"


def test_run_sh_parses_and_uses_the_waits() -> None:
    run_sh = (E2E / "run.sh").read_text()
    subprocess.run(["bash", "-n", str(E2E / "run.sh")], check=True)
    for use in ("cluster.py argo-manifest", "cluster.py rollout", "cluster.py workflow", "kind load image-archive"):
        assert use in run_sh, use
    assert "helm dependency build" not in run_sh
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-S", "warning", str(E2E / "run.sh")], check=True)


def test_e2e_workflow_frees_disk_before_the_run() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "e2e.yaml").read_text())
    job = workflow["jobs"]["kind"]
    assert job["env"]["PIP_NO_CACHE_DIR"] == "1"
    names = [step.get("name", "") for step in job["steps"]]
    assert names.index("free disk") < names.index("make e2e")


def test_tiny_steps_fit_beside_the_system_pods_of_a_two_cpu_runner() -> None:
    from limit.commands.manifest import render

    doc = yaml.safe_load(render("tiny", "kind"))
    requests = [t["container"]["resources"]["requests"]["cpu"] for t in doc["spec"]["templates"] if "container" in t]
    assert requests and all(cpu in ("500m", "100m") for cpu in requests), requests


def test_memory_watchdog_kills_a_process_tree_over_its_limit() -> None:
    """What `make e2e-local` does in place of the pod's cgroup: the children's memory counts too."""
    from chart_mlflow import MemoryWatchdog, quantity_bytes

    hog = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
    hog += "'b = bytearray(300 * 2**20); import time; time.sleep(60)']); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", hog], start_new_session=True)
    watchdog = MemoryWatchdog(proc.pid, quantity_bytes("128Mi"), every_s=0.1)
    try:
        proc.wait(timeout=30)  # killed by the watchdog, not by its own end
    finally:
        watchdog.stop()
    assert "processes used" in watchdog.exceeded and "over the chart's limit 128 MiB" in watchdog.exceeded
    assert watchdog.peak > quantity_bytes("128Mi")


@pytest.mark.parametrize(("text", "expected"), [("2Gi", 2 * 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9)])
def test_memory_quantities(text: str, expected: int) -> None:
    from chart_mlflow import quantity_bytes

    assert quantity_bytes(text) == expected


def test_read_only_root_lets_a_command_write_its_volumes_only(tmp_path: Path) -> None:
    """What `local_pods.py --read-only-root` wraps each pod's command in (readOnlyRootFilesystem, here)."""
    script = E2E / "read_only_root.sh"
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-S", "warning", str(script)], check=True)
    if os.geteuid() != 0 or subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode:
        pytest.skip("needs root and unshare --mount (Linux)")
    (tmp_path / "root").mkdir()
    volume = tmp_path / "tmp"
    volume.mkdir()
    probe = f"touch /tmp/written && ! touch {REPO}/limit-probe 2>/dev/null && ! touch /limit-probe 2>/dev/null"
    argv = ["unshare", "--mount", str(script), str(tmp_path / "root"), f"/tmp={volume}", "--", "sh", "-c", probe]
    done = subprocess.run(argv, env={"PATH": os.environ["PATH"], "HOME": "/"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (volume / "written").is_file() and not (REPO / "limit-probe").exists()
