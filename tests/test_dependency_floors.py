"""Every dependency range is true: its lowest admitted version is one the tests ran on.

A floor is either the lock's version (images/constraints.txt, what `make test` installs) or one this file proves
by running the project's own transformers seams on it: MPT's document attention (logits and cached generation
equal stock MPT's), and a packed Trainer run with reentrant checkpointing. The proof downloads the floor's
wheel from the package index (no dependencies: the rest of the environment is the lock's) and skips when the
index is out of reach.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, run_env
from packaging.requirements import Requirement
from packaging.version import Version

PROVEN = {"transformers"}  # floors below the lock, each proven here on its own version
# Bounds the vLLM extra puts on packages the project does not use itself: constraints, not floors of ours.
NOT_OURS = {"fastapi", "protobuf"}


def requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in (*project["dependencies"], *extras["gpu"])]


def lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "images" / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def floor(requirement: Requirement) -> str | None:
    return next((s.version for s in requirement.specifier if s.operator in (">=", "==")), None)


def test_every_floor_is_the_locked_version_or_proven():
    pins = lock()
    for requirement in requirements():
        name = requirement.name.lower()
        lowest = floor(requirement)
        if lowest is None or name in PROVEN | NOT_OURS:
            continue
        assert lowest == pins[name], f"{requirement}: the tests run {name} {pins[name]}, not its floor {lowest}"


CHECK = r"""
import sys, torch, transformers
from transformers import MptConfig, MptForCausalLM
from limit.models.mpt.attention import install
from limit.spec.study import TrainSpec
from limit.training.trainer import collator, training_arguments

assert transformers.__version__ == sys.argv[1], transformers.__version__
torch.manual_seed(0)
stock = MptForCausalLM(MptConfig(d_model=64, n_heads=4, n_layers=2, max_seq_len=64, vocab_size=97)).eval()
ids = torch.randint(1, 97, (2, 9))
for implementation in ("sdpa", "eager"):
    ours = install(MptForCausalLM(stock.config).eval(), implementation)
    ours.load_state_dict(stock.state_dict())
    with torch.no_grad():
        assert (ours(input_ids=ids).logits - stock(input_ids=ids).logits).abs().max() < 1e-5
    settings = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(ids[:1], **settings), stock.generate(ids[:1], **settings))

train = TrainSpec(precision="fp32", global_batch_size=2, micro_batch_size=2, max_seq_len=32, epochs=1,
                  warmup_steps=0, gradient_checkpointing=True, packing=True, lr=1e-3)
args = training_arguments(train, __import__("pathlib").Path(sys.argv[2]), "floor")
args.report_to = []
model = install(MptForCausalLM(stock.config), "sdpa")
rows = [{"input_ids": r, "labels": r} for r in torch.randint(1, 97, (4, 12)).tolist()]
trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, data_collator=collator(train, None))
assert torch.isfinite(torch.tensor(trainer.train().training_loss))
print("ok", transformers.__version__)
"""


@pytest.fixture(scope="module")
def transformers_floor(tmp_path_factory) -> tuple[str, Path]:
    """The floor's transformers and what pip would change beside it in this environment (e.g. an older
    huggingface-hub), unpacked into a folder that goes first on the path."""
    [requirement] = [r for r in requirements() if r.name == "transformers"]
    version = floor(requirement)
    report = tmp_path_factory.mktemp("pip") / "report.json"
    pip = [sys.executable, "-m", "pip"]
    planned = subprocess.run(
        [*pip, "install", "--dry-run", "-q", "--report", str(report), f"transformers=={version}"],
        capture_output=True,
        text=True,
    )
    if planned.returncode:
        pytest.skip(f"transformers {version} cannot be resolved here: {planned.stderr.strip()[-200:]}")
    changes = [
        f"{i['metadata']['name']}=={i['metadata']['version']}" for i in json.loads(report.read_text())["install"]
    ]
    cache = Path.home() / ".cache" / "limit-floors"
    got = subprocess.run(
        [*pip, "download", "-q", "--no-deps", "-d", str(cache), *changes], capture_output=True, text=True
    )
    if got.returncode:
        pytest.skip(f"{changes} could not be downloaded: {got.stderr.strip()[-200:]}")
    site = tmp_path_factory.mktemp("transformers-floor")
    for change in changes:
        name, pinned = change.split("==")
        [wheel] = [w for w in cache.glob("*.whl") if _is(w, name, pinned)]
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    return next(c.split("==")[1] for c in changes if c.startswith("transformers==")), site


def _is(wheel: Path, name: str, version: str) -> bool:
    wheel_name, wheel_version = wheel.name.split("-")[:2]
    same_name = wheel_name.lower().replace("_", "-") == name.lower().replace("_", "-")
    return same_name and Version(wheel_version) == Version(version)


def test_the_transformers_floor_runs_attention_generation_and_packed_training(transformers_floor, tmp_path):
    version, site = transformers_floor
    result = subprocess.run(
        [sys.executable, "-c", CHECK, version, str(tmp_path / "trainer")],
        capture_output=True,
        text=True,
        env=run_env(PYTHONPATH=f"{site}:{REPO}"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["ok", version]
