"""The images install what the tests ran with: the lock agrees with this environment, every pip install is
constrained by it, PyTorch's index never stands alone, and the GPU image carries the pinned vLLM."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from limit.models.vllm import VLLM_PIN

REPO = Path(__file__).resolve().parents[1]
PYPI = "https://pypi.org/simple"


def _lock_module():
    spec = importlib.util.spec_from_file_location("images_lock", REPO / "images" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lock_agrees_with_the_tested_environment() -> None:
    lock = _lock_module()
    stale = lock.stale_environment()  # relocking from an environment older than pyproject.toml is wrong
    assert not stale, "\n".join([*stale, "fix: make install (this environment predates pyproject.toml)"])
    problems = lock.problems()
    assert not problems, "\n".join([*problems, f"fix: {lock.FIX}"])


def test_lock_check_names_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    lock = _lock_module()
    stale = tmp_path / "constraints.txt"
    stale.write_text(lock.LOCK.read_text().replace("transformers==", "transformers==0.0.1+"))
    monkeypatch.setattr(lock, "LOCK", stale)
    assert lock.main(["check"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("images/constraints.txt: transformers: tested with") for line in out)
    assert out[-1] == ("fix: make install" if lock.stale_environment() else "fix: bash images/build.sh lock")


def pip_installs(dockerfile: Path) -> list[list[str]]:
    """The argv of every `pip install` in the Dockerfile's RUN instructions."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    runs = [line.strip()[4:] for line in text.splitlines() if line.strip().startswith("RUN ")]
    commands = [shlex.split(part) for run in runs for part in re.split(r"&&|\|\|", run)]
    return [argv for argv in commands if argv[:2] == ["pip", "install"]]


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_every_pip_install_is_locked_and_keeps_pypi(flavour: str) -> None:
    installs = pip_installs(REPO / "images" / f"{flavour}.Dockerfile")
    assert len(installs) >= 3
    for argv in installs:
        assert "-c" in argv and argv[argv.index("-c") + 1] == "constraints.txt", argv
        if "--index-url" in argv:  # PyTorch's index lacks some of torch's dependencies: PyPI stays
            assert argv[argv.index("--extra-index-url") + 1] == PYPI, argv


def test_gpu_image_installs_the_vllm_extra_pinned_where_mpt_runs() -> None:
    installs = pip_installs(REPO / "images" / "gpu.Dockerfile")
    assert any(any(a.startswith(".[") and "vllm" in a for a in argv) for argv in installs)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["vllm"] == [f"vllm=={VLLM_PIN}"]


DIGEST = "sha256:" + "ab" * 32


def _build(tmp_path: Path, inspect_prints: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """images/build.sh gpu with a stand-in `docker` on PATH that logs its arguments, one call a line."""
    calls = tmp_path / "docker-calls"
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(
        f'#!/usr/bin/env bash\necho "$*" >> {calls}\n'
        f'if [[ "$1 $2 $3" == "buildx imagetools inspect" ]]; then echo "{inspect_prints}"; fi\n'
    )
    docker.chmod(0o755)
    path = f"{docker.parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(["bash", "images/build.sh", "gpu"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PATH": path, **env})  # fmt: skip
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_push_prints_the_digest_the_registry_serves(tmp_path: Path) -> None:
    from limit.backends.profile import Profile

    registry = {"REGISTRY": "registry.example.com/limit/", "TAG": "t1"}
    done, calls = _build(tmp_path, DIGEST, PUSH="1", **registry)
    assert done.returncode == 0, done.stderr
    assert calls[1:] == [
        "push registry.example.com/limit/limit-gpu:t1",
        "buildx imagetools inspect --format {{.Manifest.Digest}} registry.example.com/limit/limit-gpu:t1",
    ]
    ref = f"registry.example.com/limit/limit-gpu@{DIGEST}"
    assert done.stdout.splitlines()[-1] == f"pushed {ref}"
    assert Profile(name="p", image=ref, artifacts="s3://b/a", mlflow_uri="http://m").image == ref


def test_push_without_a_digest_fails(tmp_path: Path) -> None:
    done, _ = _build(tmp_path, "", PUSH="1")
    assert done.returncode == 1 and "the registry gave no digest for limit-gpu:" in done.stderr


def test_a_local_build_asks_no_registry(tmp_path: Path) -> None:
    done, calls = _build(tmp_path, DIGEST)
    assert done.returncode == 0 and len(calls) == 1 and calls[0].startswith("build -f images/gpu.Dockerfile")
