"""The chart's MLflow server run on this machine, as its pod would run it: the rendered Deployment's command,
flags and environment, and its memory limit enforced by a watchdog.

Only what must differ on one machine is replaced: the listening address and port, the sqlite files (store and,
with basic auth, users), the S3 endpoint and the Secret values. Everything else (workers, job execution, allowed
hosts, artifact proxying, basic auth) comes from `helm template` of charts/limit, so a chart change that breaks
the server breaks `make e2e-local` and tests/test_chart.py too.

The memory limit is enforced by summing the proportional set size (PSS) of the server's whole process tree,
not by RLIMIT_AS: a cgroup charges the pod for all its processes together, which a per-process RLIMIT_AS
cannot see (MLflow's job runner was 15 processes of ~160 MiB each), and RLIMIT_AS counts reserved address
space, which Python processes hold far beyond what they use. PSS counts the pages forked workers share once,
as the cgroup does. (A cgroup itself would be exact, but needs privileges this machine may not grant.)
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "limit"
KIND_VALUES = REPO / "tests" / "e2e" / "values-kind.yaml"
ENDPOINT_VARS = ("MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}  # fmt: skip


def quantity_bytes(text: str) -> int:
    """A Kubernetes memory quantity ("2Gi", "512Mi", "1G", "1e9") in bytes."""
    match = re.fullmatch(r"([0-9.]+(?:e[0-9]+)?)([kMGT]i?)?", str(text))
    if not match:
        raise ValueError(f"not a memory quantity: {text}")
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])


def rendered_objects(values: dict | None = None) -> list[dict]:
    """The chart's objects rendered with `values` (default: the kind e2e's values)."""
    import helm_python

    values = yaml.safe_load(KIND_VALUES.read_text()) if values is None else values
    rendered = helm_python.Chart.load(str(CHART)).render(values, name="limit", namespace="limit", is_install=True)
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def rendered_container(values: dict | None = None) -> dict:
    """The MLflow container of the chart rendered with `values` (default: the kind e2e's values)."""
    for doc in rendered_objects(values):
        if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith("-mlflow"):
            return doc["spec"]["template"]["spec"]["containers"][0]
    raise LookupError("the chart rendered no MLflow Deployment")


def local_auth_config(values: dict, store: Path) -> Path:
    """The chart's basic-auth settings (its ConfigMap) as a file next to `store`, the users' sqlite file."""
    [config] = [
        o
        for o in rendered_objects(values)
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-mlflow-auth")
    ]
    text = re.sub(r"(?m)^database_uri = .*$", f"database_uri = sqlite:///{store}", config["data"]["basic_auth.ini"])
    path = store.with_suffix(".ini")
    path.write_text(text)
    return path


def _override(args: list[str], flags: dict[str, str]) -> list[str]:
    """`args` with each `--flag=value` of `flags` replaced; every one must be there."""
    out, seen = [], set()
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in flags:
            seen.add(flag)
            arg = f"{flag}={flags[flag]}"
        out.append(arg)
    missing = set(flags) - seen
    if missing:
        raise LookupError(f"the chart's MLflow args no longer have {sorted(missing)}: {args}")
    return out


def local_server(
    container: dict,
    port: int,
    store: Path,
    s3_url: str,
    secrets: dict[str, dict[str, str]],
    auth_config: Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that run the chart's MLflow container here, on 127.0.0.1:`port` (`auth_config`: the
    file `local_auth_config` wrote, when the chart has basic auth on)."""
    flags = {"--host": "127.0.0.1", "--port": str(port), "--backend-store-uri": f"sqlite:///{store}"}
    argv = container["command"] + _override(container["args"], flags)
    env = {}
    for var in container.get("env", []):
        if var["name"] in ENDPOINT_VARS:
            env[var["name"]] = s3_url
        elif var["name"] == "MLFLOW_AUTH_CONFIG_PATH":
            if auth_config is None:
                raise LookupError("the chart's MLflow has basic auth on: give its settings (local_auth_config)")
            env[var["name"]] = str(auth_config)
        elif "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"]][ref["key"]]
    return argv, env


def memory_limit(container: dict) -> int:
    return quantity_bytes(container["resources"]["limits"]["memory"])


def tree_memory(pid: int) -> tuple[int, int]:
    """(bytes, processes) of a process and its descendants: PSS where the platform has it, else RSS."""
    total, count = 0, 0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    for proc in procs:
        try:
            info = proc.memory_full_info()
            total += getattr(info, "pss", info.rss)
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total, count


class MemoryWatchdog:
    """Kills a process tree whose memory passes `limit` bytes, as the kubelet's cgroup would; keeps the peak."""

    def __init__(self, pid: int, limit: int, every_s: float = 0.5):
        self.pid, self.limit, self.every_s = pid, limit, every_s
        self.peak, self.peak_processes, self.exceeded = 0, 0, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.every_s):
            used, count = tree_memory(self.pid)
            if used > self.peak:
                self.peak, self.peak_processes = used, count
            if used > self.limit:
                self.exceeded = (
                    f"{count} processes used {used / 2**20:.0f} MiB, over the chart's limit "
                    f"{self.limit / 2**20:.0f} MiB: its pod would be OOM-killed"
                )
                self._kill()
                return

    def _kill(self) -> None:
        try:
            root = psutil.Process(self.pid)
            for proc in [*root.children(recursive=True), root]:
                proc.kill()
        except psutil.NoSuchProcess:
            pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
