"""The GPU finetune's own path, run by 2 CPU processes standing in for 2 GPUs (`train.cpu_processes`): the
same `limit step finetune` relaunched under torchrun, DeepSpeed ZeRO-2/3 and rank 0's duties, checked
against one process training the same global batch (48 rows, 8 a step: 2 micro-batches of 2 rows on each
of 2 ranks, or 4 micro-batches in one process, token-weighted alike).

Each run is a real `limit step` subprocess; runs shared by several tests are module fixtures.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import run_env, still_running

from limit.execution.store import MANIFEST
from limit.spec.study import STUDIES_DIR, TrainSpec, load_study
from limit.steps import step_key

pytestmark = pytest.mark.slow
STEPS_PER_EPOCH = 6  # 48 rows (instruct-v1), 8 a step
TOLERANCE = 1e-4  # relative


@dataclass
class Work:
    root: Path
    env: dict[str, str]
    prepare: object
    finetune: object

    def input(self, **train):
        base = self.finetune.input
        return base.model_copy(update={"train": TrainSpec.model_validate({**base.train.model_dump(), **train})})

    def out(self, inp, artifacts: str = "artifacts") -> Path:
        return self.root / artifacts / f"finetune/{step_key('finetune', inp)}"


def study_file(folder: Path) -> Path:
    """The tiny study cut to one finetune of instruct-v1 (48 rows, so every step holds 8 rows on any world)."""
    data = yaml.safe_load((STUDIES_DIR / "tiny.yaml").read_text())
    data.update(name="ranks", baselines=[], pairs=[], prompts={})
    data["runs"] = [{"name": "ranks", "model": "tiny-mpt", "dataset": "instruct-v1"}]
    data["training"]["defaults"].update(micro_batch_size=2, epochs=2)
    data["gauntlet"]["limit"] = 4
    path = folder / "ranks.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def step_argv(kind: str, inp) -> list[str]:
    return [sys.executable, "-m", "limit.cli", "step", kind, "--input", inp.model_dump_json()]


def work_env(root: Path, artifacts: str = "artifacts", **extra: str) -> dict[str, str]:
    return run_env(
        LIMIT_WORKDIR=str(root),
        LIMIT_ARTIFACTS=extra.pop("LIMIT_ARTIFACTS", str(root / artifacts)),
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        **extra,
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Work:
    from limit.plan import build_plan

    root = tmp_path_factory.mktemp("ranks")
    plan = build_plan(load_study(str(study_file(root))))
    prepare, finetune = plan.steps["prepare-instruct-v1"], plan.steps["finetune-ranks"]
    env = work_env(root)
    for artifacts in ("artifacts", "killed", "orphan"):
        done = subprocess.run(
            step_argv("prepare", prepare.input), env={**env, "LIMIT_ARTIFACTS": str(root / artifacts)}
        )
        assert done.returncode == 0
    return Work(root, env, prepare, finetune)


def finetune(work: Work, artifacts: str = "artifacts", **train) -> Path:
    inp = work.input(**train)
    done = subprocess.run(
        step_argv("finetune", inp), env=work_env(work.root, artifacts), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return work.out(inp, artifacts)


@pytest.fixture(scope="module")
def one_process(work: Work) -> Path:
    return finetune(work)


@pytest.fixture(scope="module")
def zero2(work: Work) -> Path:
    return finetune(work, cpu_processes=2, zero_stage=2)


@pytest.fixture(scope="module")
def zero3(work: Work) -> Path:
    return finetune(work, cpu_processes=2, zero_stage=3)


def losses(folder: Path) -> list[tuple[int, float]]:
    log = json.loads((folder / "train_log.json").read_text())["log_history"]
    return [(entry["step"], entry["loss"]) for entry in log if "loss" in entry]


def assert_losses_equal(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [step for step, _ in got] == [step for step, _ in want]
    worst = max(abs(a - b) / abs(b) for (_, a), (_, b) in zip(got, want, strict=True))
    assert worst <= TOLERANCE, (worst, got, want)


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def assert_weights_equal(got: dict, want: dict) -> None:
    got, want = untied(got), untied(want)
    assert got.keys() == want.keys()
    got, want = {k: v.detach() for k, v in got.items()}, {k: v.detach() for k, v in want.items()}
    worst = {name: float((got[name] - want[name]).norm() / want[name].norm().clamp_min(1e-12)) for name in want}
    assert max(worst.values()) <= TOLERANCE, worst


def untied(state: dict) -> dict:
    """Without the output embedding where it is a copy of the input one (DeepSpeed's fp32 consolidation names
    both); transformers ties them on load."""
    if "lm_head.weight" not in state:
        return state
    assert state["lm_head.weight"].equal(state["transformer.wte.weight"])
    return {name: tensor for name, tensor in state.items() if name != "lm_head.weight"}


def logits(model_folder: Path, state: dict | None = None):
    """Plain transformers (no DeepSpeed, transformers' own MPT attention) on a fixed batch of token ids."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_folder).eval()
    if state is not None:
        model.load_state_dict(state)
    ids = torch.arange(3, 3 + 2 * 40).reshape(2, 40) % model.config.vocab_size
    with torch.no_grad():
        return model(input_ids=ids).logits


def assert_close(got, want) -> None:
    assert float((got - want).norm() / want.norm()) <= TOLERANCE


@pytest.mark.parametrize("stage", [2, 3])
def test_two_ranks_train_as_one_process(stage: int, request, one_process: Path):
    """Same losses per step, same weights every epoch, and a plain MPT checkpoint with the same logits."""
    ranks = request.getfixturevalue(f"zero{stage}")
    assert len(losses(ranks)) == 2 * STEPS_PER_EPOCH
    assert_losses_equal(losses(ranks), losses(one_process))
    for epoch in (1, 2):
        assert_weights_equal(weights(ranks / f"epoch-{epoch}"), weights(one_process / f"epoch-{epoch}"))
        # the tied output embedding is written once, as one process writes it (transformers ties it on load)
        assert "lm_head.weight" not in weights(ranks / f"epoch-{epoch}"), epoch
    assert_close(logits(ranks / "epoch-2"), logits(one_process / "epoch-2"))
    assert sorted(p.name for p in ranks.iterdir()) == sorted(p.name for p in one_process.iterdir())
    assert not [p.name for p in (ranks / "epoch-2").iterdir() if "zero" in p.name or p.is_dir()]
    summary = json.loads((ranks / MANIFEST).read_text())["summary"]
    assert summary["train_tokens"] == json.loads((one_process / MANIFEST).read_text())["summary"]["train_tokens"]
    # the worst-case probe went forward and backward through the DeepSpeed engine, and the losses above held
    assert summary["probe_peak_gib"] > 0 and summary["probe_tokens_per_second"] > 0


def test_unpacked_two_ranks_train_as_one_process(work: Work):
    ranks = finetune(work, cpu_processes=2, zero_stage=2, packing=False)
    one = finetune(work, packing=False)
    assert_losses_equal(losses(ranks), losses(one))
    assert_weights_equal(weights(ranks / "epoch-2"), weights(one / "epoch-2"))


def ranks_of(proc: subprocess.Popen) -> dict[int, int]:
    """torchrun's ranks (pid by RANK) under `proc`, once they started."""
    import psutil

    found: dict[int, int] = {}
    for child in psutil.Process(proc.pid).children(recursive=True):
        rank = child.environ().get("RANK")
        if rank is not None and child.environ().get("LOCAL_RANK") is not None:
            found[int(rank)] = child.pid
    return found


def on_second_epoch(stream, then) -> threading.Thread:
    """Call `then()` at the first step of epoch 2 that Trainer logs (epoch 1 was saved by then); keep the text."""
    lines: list[str] = []

    def read() -> None:
        fired = False
        for line in stream:
            lines.append(line)
            if not fired and re.search(r"'epoch': '1\.\d", line):
                fired = True
                then()

    reader = threading.Thread(target=read, daemon=True)
    reader.lines = lines  # type: ignore[attr-defined]
    reader.start()
    return reader


def test_a_rank_killed_mid_epoch_is_retried_from_the_sharded_checkpoint(work: Work, zero3: Path):
    import torch
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    inp = work.input(cpu_processes=2, zero_stage=3)
    env = work_env(work.root, "killed")
    proc = subprocess.Popen(
        step_argv("finetune", inp), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    killed: list[int] = []

    def kill_rank_1() -> None:
        killed.append(ranks_of(proc)[1])
        os.kill(killed[0], signal.SIGKILL)

    reader = on_second_epoch(proc.stdout, kill_rank_1)
    assert proc.wait(timeout=600) == 75, "".join(reader.lines)[-4000:]  # retryable
    reader.join(timeout=10)
    assert killed, "".join(reader.lines)[-4000:]
    out = work.out(inp, "killed")
    assert not out.exists(), "nothing looks complete"
    partial = out.with_name(out.name + ".partial")
    checkpoint = partial / "resume" / f"checkpoint-{STEPS_PER_EPOCH}"
    assert (checkpoint / "trainer_state.json").is_file() and not (partial / "epoch-2").exists()

    # The sharded state is the model that trained: the exported epoch holds it, and plain transformers runs it.
    trained = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint))
    exported = weights(partial / "epoch-1")
    assert_weights_equal(exported, {name: tensor.to(torch.float32) for name, tensor in trained.items()})
    assert_close(logits(partial / "epoch-1"), logits(partial / "epoch-1", state=trained))

    rerun = subprocess.run(step_argv("finetune", inp), env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"resuming from checkpoint-{STEPS_PER_EPOCH}" in rerun.stdout
    summary = json.loads((out / MANIFEST).read_text())["summary"]
    assert summary["resumed_from_step"] == STEPS_PER_EPOCH and summary["steps"] == 2 * STEPS_PER_EPOCH
    for epoch in (1, 2):
        assert_weights_equal(weights(out / f"epoch-{epoch}"), weights(zero3 / f"epoch-{epoch}"))
    assert_losses_equal(losses(out)[STEPS_PER_EPOCH:], losses(zero3)[STEPS_PER_EPOCH:])


SPY = """
import json, os
import boto3
WRITES = {"PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "CopyObject",
          "DeleteObject", "DeleteObjects"}
def _record(params, model, **kwargs):
    if model.name not in WRITES:
        return
    body = params.get("Body")
    key = params.get("Key") or " ".join(o["Key"] for o in params.get("Delete", {}).get("Objects", []))
    owner = json.loads(body.getvalue())["owner"] if key.endswith(".lease") and hasattr(body, "getvalue") else None
    row = {"pid": os.getpid(), "rank": os.environ.get("RANK"), "op": model.name, "key": key,
           "owner": owner}
    with open(os.environ["S3_WRITES_LOG"], "a") as log:
        log.write(json.dumps(row) + "\\n")
_client = boto3.client
def client(*args, **kwargs):
    s3 = _client(*args, **kwargs)
    s3.meta.events.register("before-parameter-build.s3", _record)
    return s3
boto3.client = client
"""


def test_on_s3_only_rank_0_writes_each_epoch_once_under_one_lease(work: Work, s3_env: str, tmp_path: Path):
    """Every process's S3 writes, seen through boto3's own event hooks (a sitecustomize in each process)."""
    (tmp_path / "sitecustomize.py").write_text(SPY)
    log = tmp_path / "writes.jsonl"
    root = f"s3://{s3_env}/artifacts"
    for kind, inp in (("prepare", work.prepare.input), ("finetune", work.input(cpu_processes=2, zero_stage=2))):
        env = work_env(work.root, LIMIT_ARTIFACTS=root, PYTHONPATH=str(tmp_path), S3_WRITES_LOG=str(log))
        done = subprocess.run(step_argv(kind, inp), env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ref = f"finetune/{step_key('finetune', inp)}"
    writes = [row for row in map(json.loads, log.read_text().splitlines()) if ref in row["key"]]
    assert writes and {row["rank"] for row in writes} <= {None, "0"}, {row["rank"] for row in writes}
    assert len({row["pid"] for row in writes if row["rank"] is None}) == 1  # the step's process, before torchrun
    for epoch in (1, 2):
        uploads = [
            w
            for w in writes
            if w["key"].endswith(f"/epoch-{epoch}/model.safetensors")
            and w["op"] in ("PutObject", "CreateMultipartUpload")
        ]
        assert len(uploads) == 1, uploads
    lease = [row for row in writes if row["key"].endswith(".lease")]
    assert {row["owner"] for row in lease if row["op"] == "PutObject"} != {None}
    assert len({row["owner"] for row in lease if row["op"] == "PutObject"}) == 1
    assert lease[-1]["op"] == "DeleteObject"  # released once the manifest was written
    assert [row["op"] for row in writes if row["key"].endswith(MANIFEST)] == ["PutObject"]


def test_killing_limit_run_leaves_no_rank_behind_and_the_rerun_resumes(work: Work, zero2: Path):
    """`kill -9` of `limit run`'s process group mid-epoch: its step (torchrun) and both ranks end within
    seconds, the lock goes with them, and the rerun resumes from epoch 1's checkpoint to the same weights."""
    import psutil

    data = yaml.safe_load(study_file(work.root).read_text())
    data["training"]["defaults"].update(cpu_processes=2, zero_stage=2)
    study = work.root / "ranks2.yaml"
    study.write_text(yaml.safe_dump(data, sort_keys=False))
    workdir = work.root / "run"
    argv = [sys.executable, "-m", "limit.cli", "run", str(study), "--workdir", str(workdir)]
    env = work_env(workdir)
    env.pop("LIMIT_ARTIFACTS")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while not second_epoch_logged(workdir) and time.time() < deadline:
        assert proc.poll() is None
        time.sleep(0.02)
    steps = psutil.Process(proc.pid).children(recursive=True)
    for step in steps:  # hold them mid-epoch while their parent dies; they learn of it as they go on
        step.suspend()
    assert len([s for s in steps if "LOCAL_RANK" in s.environ()]) == 2, [s.cmdline() for s in steps]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for step in steps:
        step.resume()
    alive = still_running(steps, timeout=30)
    assert not alive, [p.cmdline() for p in alive]
    assert not list((workdir / "artifacts" / "finetune").glob("*/_manifest.json"))

    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    (log,) = sorted(workdir.glob("ranks/logs/*/finetune-ranks.log"))[-1:]
    assert f"resuming from checkpoint-{STEPS_PER_EPOCH}" in log.read_text()
    (out,) = (workdir / "artifacts" / "finetune").glob("*/_manifest.json")
    assert_weights_equal(weights(out.parent / "epoch-2"), weights(zero2 / "epoch-2"))


def second_epoch_logged(workdir: Path) -> bool:
    logs = list(workdir.glob("ranks/logs/*/finetune-ranks.log"))
    return bool(logs) and re.search(r"'epoch': '1\.\d", logs[0].read_text()) is not None


LORA = {"method": "lora", "lora": {"r": 4, "alpha": 8.0}, "lr": 1e-2}


def test_lora_on_two_zero3_ranks_trains_as_one_process(work: Work):
    """LoRA through DeepSpeed: the adapters' losses per step and the merged epochs as one process's. ZeRO-3,
    where rank 0 loading the base to merge into must not partition it across ranks that are training (it
    hung so); ZeRO-2 passes too, left out to keep the suite's time."""
    ranks = finetune(work, cpu_processes=2, zero_stage=3, **LORA)
    one = finetune(work, **LORA)
    assert_losses_equal(losses(ranks), losses(one))
    assert_weights_equal(weights(ranks / "epoch-2"), weights(one / "epoch-2"))
    assert not [p.name for p in (ranks / "epoch-2").iterdir() if "adapter" in p.name]
