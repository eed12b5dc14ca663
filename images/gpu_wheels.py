"""Wheels for `limit check-gpu` on a bare GPU machine that has torch and transformers but not the rest.

    python images/gpu_wheels.py --have images/gpu-node-packages.txt --out .whl

`--have` lists the distributions the node already has, one name a line (for the lent H200: its image's list).
Starting from what the check's stages import, every requirement the node lacks is downloaded for CPython
3.12 on manylinux x86-64, at the lock's version (images/constraints.txt) where the lock has it, and its own
requirements followed the same way. DeepSpeed ships as source only: it is built into a pure-Python wheel
here (its CUDA ops compile on first use there). Prints each wheel's size and the total.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
NEEDS = ["deepspeed", "pydantic", "mlflow-skinny", "sqlalchemy", "alembic", "boto3", "datasets", "lm-eval"]
PLATFORM = ["--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--only-binary=:all:"]
PLATFORM += [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 27, 28, 34)] + ["--platform=manylinux2014_x86_64"]
PLATFORM += ["--platform=any"]
MARKERS = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}  # fmt: skip


def normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "images" / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            found[normal(name)] = version
    return found


def fetch(name: str, version: str | None, out: Path) -> Path:
    spec = f"{name}=={version}" if version else name
    before = set(out.glob("*.whl"))
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(out)]
    if subprocess.run([*pip, *PLATFORM, spec], capture_output=True).returncode:
        with tempfile.TemporaryDirectory() as sdist:  # source only (DeepSpeed): build a pure-Python wheel
            subprocess.run([*pip[:4], "-q", "--no-deps", "--no-binary=:all:", "-d", sdist, spec], check=True)
            build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out)]
            subprocess.run([*build, *Path(sdist).iterdir()], check=True, env={**os.environ, "DS_BUILD_OPS": "0"})
    new = set(out.glob("*.whl")) - before
    if new:
        return next(iter(new))
    return next(w for w in out.glob("*.whl") if normal(w.name.split("-")[0]) == normal(name))  # downloaded before


def requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    found = []
    for line in lines:
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.split(":", 1)[1].strip())
            if requirement.marker is None or requirement.marker.evaluate(MARKERS):
                found.append(requirement.name)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--have", required=True, help="A file: the node's distributions, one name a line.")
    parser.add_argument("--out", default=".whl")
    args = parser.parse_args()
    have = {normal(n) for n in Path(args.have).read_text().split() if n and not n.startswith("#")}
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    lock, queue, seen, total = pins(), list(NEEDS), set(), 0
    while queue:
        name = normal(queue.pop(0))
        if name in seen or name in have:
            continue
        seen.add(name)
        wheel = fetch(name, lock.get(name), out)
        total += wheel.stat().st_size
        print(f"{wheel.name:<70} {wheel.stat().st_size / 2**20:6.2f} MiB")
        queue += requirements(wheel)
    print(f"{len(seen)} wheels, {total / 2**20:.1f} MiB in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
