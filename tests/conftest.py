"""Shared fixtures: an isolated work folder per test, ../shared, and a real S3 endpoint (moto server)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared() -> Path:
    """The read-only data beside the checkout; tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: it holds the gauntlet data and the LIMIT authors' release")
    return SHARED


@pytest.fixture
def limit_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work folder, artifact root and MLflow store all under tmp_path, never in the repo."""
    import mlflow

    workdir = tmp_path / "runs"
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    monkeypatch.setenv("LIMIT_WORKDIR", str(workdir))
    monkeypatch.setenv("LIMIT_ARTIFACTS", str(workdir / "artifacts"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("LIMIT_PARENT_RUN_ID", raising=False)
    mlflow.set_tracking_uri(uri)  # MLflow's process-wide URI wins over the variable: pin it for this test
    workdir.mkdir(parents=True)
    return workdir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """moto in server mode: a real S3 HTTP endpoint on 127.0.0.1, not an in-process mock."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Credentials and endpoint as a pod gets them (env), plus a fresh bucket."""
    import uuid

    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"limit-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return bucket


def run_env(**extra: str) -> dict[str, str]:
    """The current environment (with the venv's bin first on PATH) plus `extra`, for subprocess runs."""
    import sys

    env = {**os.environ, **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(autouse=True)
def _restore_commands_environment():
    """CLI commands run in-process set LIMIT_* and MLFLOW_* (as flags become the steps' environment): put them
    back after each test, so no later test's subprocess inherits another test's artifact root."""
    prefixes = ("LIMIT_", "MLFLOW_")
    saved = {k: v for k, v in os.environ.items() if k.startswith(prefixes)}
    yield
    for name in [k for k in os.environ if k.startswith(prefixes) and k not in saved]:
        del os.environ[name]
    os.environ.update(saved)


def still_running(processes: list, timeout: float) -> list:
    """Those of `processes` (psutil) still running after up to `timeout` seconds. A zombie has ended: an orphan's
    exit status waits for whoever adopted it (PID 1 in a container may never collect it)."""
    import time

    import psutil

    def running(process) -> bool:
        try:
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.time() + timeout
    alive = [p for p in processes if running(p)]
    while alive and time.time() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if running(p)]
    return alive
