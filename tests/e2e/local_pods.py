"""The kind e2e without a cluster: run a study's Argo manifest task by task as local processes.

Each DAG task runs its template's command and args with its template's environment, in a fresh folder
standing in for the pod (a folder per volume: /work, /tmp, home; nothing shared but S3 and MLflow), parameters
substituted as Argo would; S3 is moto's HTTP server and MLflow a real `mlflow server` started as the chart's
pod starts it (the rendered Deployment's command, flags and environment, under its memory limit: see
chart_mlflow.py). Then the exit handler, then the same checks as the kind e2e (check_results.py). Slow (the
whole tiny study, one step at a time), so it is a script, not part of `make test`:

    .venv/bin/python tests/e2e/local_pods.py [--study tiny] [--keep DIR] [--read-only-root]

With --read-only-root (Linux, as root) each pod also runs as its container would with readOnlyRootFilesystem:
in a mount namespace of its own, the root read-only and only its volume folders writable, at their real mount
paths (read_only_root.sh), so a step that writes anywhere else fails here as it would in the cluster.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from functools import cache
from pathlib import Path

import boto3
import yaml
from chart_mlflow import MemoryWatchdog, local_server, memory_limit, rendered_container
from moto.server import ThreadedMotoServer

from limit.backends.profile import load_profile
from limit.commands.manifest import render

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ACCESS_KEY, SECRET_KEY = "local-pods", "local-pods-secret"
# The pods import the code this process rendered their manifest with (an image and its planner agree).
IMPORTS = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
PARAM = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPods:
    """Runs templates of one manifest the way Argo would run their pods, one after the other."""

    def __init__(self, manifest: dict, root: Path, secrets: dict[str, dict[str, str]], read_only_root: bool = False):
        self.templates = {t["name"]: t for t in manifest["spec"]["templates"]}
        self.root = root
        self.secrets = secrets
        self.read_only_root = read_only_root
        self.globals = {"workflow.name": manifest["metadata"]["generateName"] + "local"}

    def run(self, template: str, task: str, inputs: dict[str, str]) -> dict[str, str]:
        spec = self.templates[template]
        pod = Path(tempfile.mkdtemp(dir=self.root, prefix=f"{task}-"))
        values = {**self.globals, **{f"inputs.parameters.{k}": v for k, v in inputs.items()}}

        volumes = pod_volumes(spec["container"], pod)

        def local(text: str) -> str:
            text = PARAM.sub(lambda m: values[m.group(1)], text)
            return text if self.read_only_root else volumes(text)

        env = {**IMPORTS, "PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(pod)}
        for var in spec["container"].get("env", []):
            if "value" in var:
                env[var["name"]] = local(var["value"])
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                if ref["name"] in self.secrets or not ref.get("optional"):
                    env[var["name"]] = self.secrets[ref["name"]][ref["key"]]
        argv = [local(a) for a in spec["container"]["command"] + spec["container"]["args"]]
        if self.read_only_root:
            argv = read_only_root(spec["container"], pod) + argv
        started = time.time()
        done = subprocess.run(argv, env=env, cwd=pod, capture_output=True, text=True)
        (pod / "log.txt").write_text(done.stdout + done.stderr)
        print(f"{task:48} exit {done.returncode} {time.time() - started:6.1f}s", flush=True)
        if done.returncode:
            raise SystemExit(f"{task} failed; its log: {pod / 'log.txt'}\n{done.stderr[-2000:]}")

        outputs = {}
        for param in spec.get("outputs", {}).get("parameters", []):
            path = Path(volumes(local(param["valueFrom"]["path"])))
            outputs[param["name"]] = path.read_text() if path.is_file() else param["valueFrom"]["default"]
            if "globalName" in param:
                self.globals[f"workflow.outputs.parameters.{param['globalName']}"] = outputs[param["name"]]
        return outputs


def pod_volumes(container: dict, pod: Path) -> Callable[[str], str]:
    """A function that rewrites the container's mount paths (its emptyDirs: /work, /tmp, the home folder) in
    a text to fresh folders of this pod's: the root filesystem is read-only, so these are all a step may write."""
    mounts = {m["mountPath"]: pod / m["name"] for m in container.get("volumeMounts", [])}
    for folder in mounts.values():
        folder.mkdir()
    if not mounts:
        return lambda text: text
    longest_first = "|".join(re.escape(path) for path in sorted(mounts, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w/.-])({longest_first})(?=/|$|[^\w.-])")
    return lambda text: pattern.sub(lambda m: str(mounts[m.group(1)]), text)


def read_only_root(container: dict, pod: Path) -> list[str]:
    """The argv prefix that runs a command on a read-only root with the pod's volume folders at their mounts."""
    mounts = {m["mountPath"]: pod / m["name"] for m in container.get("volumeMounts", [])}
    for folder in mounts.values():
        folder.chmod(0o777)  # an emptyDir is writable by the pod's user
    here = {HERE.parents[1], Path(sys.prefix), Path(sys.base_prefix), installed_sources()}
    hidden = sorted(str(p) for p in here if any(p.is_relative_to(m) for m in mounts))
    (pod / ".root").mkdir()
    return [
        "unshare", "--mount", str(HERE / "read_only_root.sh"), str(pod / ".root"),
        *[f"{path}={folder}" for path, folder in mounts.items()],
        *[arg for path in hidden for arg in ("--keep", path)],
        "--",
    ]  # fmt: skip


@cache
def installed_sources() -> Path:
    """Where the pods' `limit` is imported from (an editable install's checkout)."""
    code = "import limit; print(limit.__file__)"
    probe = [BIN / "python", "-c", code]  # from /, as a pod's working folder holds no sources
    done = subprocess.run(probe, env={**IMPORTS, "PATH": str(BIN)}, cwd="/", capture_output=True, text=True, check=True)
    return Path(done.stdout.strip()).parents[1]


def run_dag(manifest: dict, pods: LocalPods, mlflow: MemoryWatchdog) -> None:
    """The entrypoint DAG in its listed order (topological: the plan's order), then the exit handler."""
    dag = pods.templates[manifest["spec"]["entrypoint"]]["dag"]["tasks"]
    outputs: dict[str, dict[str, str]] = {}
    for task in dag:
        if mlflow.exceeded:
            raise SystemExit(f"mlflow server: {mlflow.exceeded}")
        inputs = {}
        for arg in task.get("arguments", {}).get("parameters", []):
            ref = PARAM.fullmatch(arg["value"])  # tasks.<task>.outputs.parameters.<name>, or a literal value
            if ref is None:
                inputs[arg["name"]] = arg["value"]
                continue
            source, _, name = ref.group(1).removeprefix("tasks.").partition(".outputs.parameters.")
            inputs[arg["name"]] = outputs[source][name]
        outputs[task["name"]] = pods.run(task["template"], task["name"], inputs)
    pods.globals["workflow.status"] = "Succeeded"
    pods.run(manifest["spec"]["onExit"], "exit-handler", {})


def wait_healthy(url: str, watchdog: MemoryWatchdog, timeout_s: int = 120) -> None:
    for _ in range(timeout_s):
        if watchdog.exceeded:
            raise SystemExit(f"mlflow server: {watchdog.exceeded}")
        try:
            urllib.request.urlopen(f"{url}/health")
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"mlflow server: no answer on {url}/health after {timeout_s}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="tiny")
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--read-only-root", action="store_true", help="each pod on a read-only root (Linux, root)")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="limit-local-pods-"))
    root.mkdir(parents=True, exist_ok=True)

    s3_port, mlflow_port = free_port(), free_port()
    s3_url, mlflow_url = f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{mlflow_port}"
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port)
    moto.start()
    profile = load_profile("kind").model_copy(update={"s3_endpoint": s3_url, "mlflow_uri": mlflow_url})
    bucket = profile.artifacts.removeprefix("s3://").split("/")[0]
    boto3.client(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ).create_bucket(Bucket=bucket)
    creds = profile.s3_credentials
    secrets = {creds.secret: {creds.access_key_key: ACCESS_KEY, creds.secret_key_key: SECRET_KEY}}
    container = rendered_container()  # the kind e2e's values: same bucket and Secret names as the profile
    argv, env = local_server(container, mlflow_port, root / "mlflow.db", s3_url, secrets)
    mlflow = subprocess.Popen(
        argv, env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(root), **env},
        stdout=(root / "mlflow.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    watchdog = MemoryWatchdog(mlflow.pid, memory_limit(container))
    try:
        wait_healthy(mlflow_url, watchdog)
        profile_path = root / "profile.yaml"
        profile_path.write_text(yaml.safe_dump(profile.model_dump(mode="json")))
        manifest = yaml.safe_load(render(args.study, str(profile_path)))
        pods = LocalPods(manifest, root, secrets, read_only_root=args.read_only_root)
        run_dag(manifest, pods, watchdog)
        check = [
            sys.executable, str(HERE / "check_results.py"), "--study", args.study,
            "--workflow", pods.globals["workflow.name"], "--mlflow", mlflow_url, "--s3-endpoint", s3_url,
            "--artifacts", profile.artifacts, "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY,
        ]  # fmt: skip
        code = subprocess.run(check).returncode
        if watchdog.exceeded:
            raise SystemExit(f"mlflow server: {watchdog.exceeded}")
        print(f"mlflow server: peak {watchdog.peak / 2**20:.0f} MiB in {watchdog.peak_processes} processes "
              f"(the chart's limit: {watchdog.limit / 2**20:.0f} MiB)")  # fmt: skip
        return code
    finally:
        watchdog.stop()
        mlflow.terminate()
        mlflow.wait()
        moto.stop()
        print(f"pods' folders and logs: {root}")


if __name__ == "__main__":
    sys.exit(main())
