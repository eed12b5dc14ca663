"""prepare + finetune steps through the runner on the tiny fixtures: loadable epoch checkpoints, loss and
learning rate per step in MLflow, the manifest, and resuming a killed finetune from its last epoch."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from limit.errors import LimitError
from limit.execution.store import MANIFEST
from limit.plan import build_plan
from limit.runner import run_step
from limit.spec.study import load_study
from limit.steps import finetune as finetune_module
from limit.steps import step_key
from limit.training import trainer as trainer_module

STEPS_PER_EPOCH = 5  # 37 single-turn LIMA rows, global batch 8
# tiny.yaml's tiny-lima finetune, step by step (torchtune pins its recipes' losses the same way): any change to
# the training numbers shows here. Measured 2026-12-01, torch 2.13.0+cpu, transformers 5.24.0.
TINY_LIMA_LOSSES = [6.942952, 6.958367, 6.933753, 6.886494, 6.881194, 6.752339, 6.735189, 6.717527, 6.719193, 6.709883]


@pytest.fixture
def tiny_steps():
    plan = build_plan(load_study("tiny"))
    return plan.steps["prepare-lima"], plan.steps["finetune-tiny-lima"]


def run(step) -> dict:
    return run_step(step.kind, step.input.model_dump_json())


def finetune_runs() -> list:
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string="tags.`limit.kind` = 'finetune'",
        order_by=["attributes.start_time ASC"],
        output_format="list",
    )
    return runs


def history(run, metric: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, metric)]


class Killed(Exception):
    """Stands in for the pod being killed right after epoch 1 was saved."""


def run_killed_after_first_epoch(finetune, monkeypatch) -> None:
    export = finetune_module.EpochExport.on_save

    def save_then_die(self, args, state, control, **kwargs):
        export(self, args, state, control, **kwargs)
        raise Killed

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(finetune_module.EpochExport, "on_save", save_then_die)
        run(finetune)


def test_finetune_killed_after_an_epoch_resumes_and_finishes(limit_env: Path, tiny_steps, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prepare, finetune = tiny_steps
    prepared = run(prepare)
    assert prepared["rows"] == 37 and prepared["dropped_multi_turn"] == 3

    run_killed_after_first_epoch(finetune, monkeypatch)

    partial = limit_env / "artifacts" / f"{finetune.ref}.partial"
    assert (partial / "epoch-1" / "model.safetensors").is_file()
    assert (partial / "resume" / f"checkpoint-{STEPS_PER_EPOCH}").is_dir()
    assert not (partial / "epoch-2").exists()
    assert not (limit_env / "artifacts" / finetune.ref).exists()  # nothing looks complete

    summary = run(finetune)

    assert summary["resumed_from_step"] == STEPS_PER_EPOCH and summary["steps"] == 2 * STEPS_PER_EPOCH
    assert summary["train_tokens"] > 0 and summary["tokens_per_second"] > 0
    out = limit_env / "artifacts" / finetune.ref
    assert json.loads((out / MANIFEST).read_text())["summary"] == summary
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "_tracking.json", "epoch-1", "epoch-2", "train_log.json"]
    for epoch in (1, 2):
        model = AutoModelForCausalLM.from_pretrained(out / f"epoch-{epoch}")
        tokenizer = AutoTokenizer.from_pretrained(out / f"epoch-{epoch}")
        assert model.config.model_type == "mpt" and tokenizer.eos_token == "<|endoftext|>"

    # Loss and learning rate every step; the second attempt continues where the first stopped.
    killed, resumed = finetune_runs()
    losses = history(killed, "loss") + history(resumed, "loss")
    assert [step for step, _ in losses] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert losses[-1][1] < losses[0][1]  # it learns something
    lrs = dict(history(killed, "learning_rate") + history(resumed, "learning_rate"))
    assert lrs[1] == 0.0 and max(lrs.values()) == pytest.approx(1e-3)  # tiny.yaml: lr 1e-3, 2 warmup steps
    assert lrs[STEPS_PER_EPOCH + 1] < lrs[STEPS_PER_EPOCH] and lrs[2 * STEPS_PER_EPOCH] < lrs[3]  # no new warmup

    # As torchtune checks its recipes: the same per-step losses as one uninterrupted run.
    monkeypatch.setenv("LIMIT_ARTIFACTS", str(limit_env / "straight"))
    run(prepare)
    run(finetune)
    straight = limit_env / "straight" / finetune.ref
    assert logged_losses(straight) == logged_losses(out)
    assert [loss for _, loss in logged_losses(straight)] == pytest.approx(TINY_LIMA_LOSSES, rel=1e-4)


def logged_losses(folder: Path) -> list[tuple[int, float]]:
    log = json.loads((folder / "train_log.json").read_text())["log_history"]
    return [(entry["step"], entry["loss"]) for entry in log if "loss" in entry]


def test_multi_gpu_finetune_relaunches_itself_under_torchrun(limit_env: Path, tiny_steps, monkeypatch):
    _, finetune = tiny_steps
    train = finetune.input.train.model_copy(update={"gpus": 2, "global_batch_size": 8, "micro_batch_size": 4})
    inp = finetune.input.model_copy(update={"train": train})
    launched = []

    def execve(path, argv, env):
        launched.append((argv, env))
        raise Killed

    monkeypatch.setattr("limit.runner.os.execve", execve)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(Killed):
        run_step("finetune", inp.model_dump_json())

    [(argv, env)] = launched
    assert argv[1:5] == ["-m", "limit.training.launch", "--standalone", "--nproc-per-node=2"]  # torchrun's own
    assert argv[5:9] == ["-m", "limit.cli", "step", "finetune"]
    assert type(inp).model_validate_json(argv[-1]) == inp  # same input, so the same key
    assert env["LIMIT_STEP_OUT"].endswith(".partial")  # every rank writes into the same output folder
    assert "DS_ACCELERATOR" not in env


def test_cpu_processes_relaunch_on_deepspeeds_cpu_accelerator_sharing_the_threads(limit_env, tiny_steps, monkeypatch):
    _, finetune = tiny_steps
    train = finetune.input.train.model_copy(update={"cpu_processes": 2, "zero_stage": 3})
    inp = finetune.input.model_copy(update={"train": train})
    launched = []

    def execve(path, argv, env):
        launched.append((argv, env))
        raise Killed

    monkeypatch.setattr("limit.runner.os.execve", execve)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    with pytest.raises(Killed):
        run_step("finetune", inp.model_dump_json())
    [(argv, env)] = launched
    assert "--nproc-per-node=2" in argv and '"cpu_processes":2' in argv[-1]
    assert env["DS_ACCELERATOR"] == "cpu" and env["OMP_NUM_THREADS"] == "2"


def test_a_step_exit_code_says_whether_a_retry_can_help():
    from limit.training.launch import exit_code

    assert exit_code([2, -15]) == 2  # a rank refused bad input; torchrun stopped the other
    assert exit_code([-9, 1]) == 75  # killed (OOM, kill -9); the other rank lost its peer
    assert exit_code([75, -15]) == 75
    assert exit_code([1, -15]) == 1  # a bug: retrying does not help


def test_killed_finetune_resumes_on_another_pod_from_s3(limit_env: Path, s3_env: str, tiny_steps, monkeypatch):
    import shutil

    import boto3

    monkeypatch.setenv("LIMIT_ARTIFACTS", f"s3://{s3_env}/artifacts")
    prepare, finetune = tiny_steps
    run(prepare)
    run_killed_after_first_epoch(finetune, monkeypatch)
    partial = limit_env / "partial" / finetune.ref
    assert not (partial / "epoch-1").exists(), "once uploaded, an epoch's weights leave the pod's disk"
    assert (partial / "resume" / f"checkpoint-{STEPS_PER_EPOCH}").is_dir()  # the latest state stays
    shutil.rmtree(limit_env / "partial")  # a new pod: only what was persisted to S3 survives

    downloaded = spy_on_downloads(monkeypatch)
    summary = run(finetune)

    assert summary["resumed_from_step"] == STEPS_PER_EPOCH
    mine = {key.split(f"{finetune.ref}/")[1] for key in downloaded if finetune.ref in key}
    mine = {name for name in mine if not name.startswith("_")}  # the manifest probe is not a download
    assert mine and all(name.startswith(f"resume/checkpoint-{STEPS_PER_EPOCH}/") for name in mine), mine
    s3 = boto3.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=s3_env, Prefix=f"artifacts/{finetune.ref}/")
    names = {obj["Key"].split("/", 3)[3] for page in pages for obj in page.get("Contents", [])}
    # resume/ is gone
    assert {n.split("/")[0] for n in names} == {MANIFEST, "_tracking.json", "epoch-1", "epoch-2", "train_log.json"}
    assert "epoch-2/model.safetensors" in names


def spy_on_downloads(monkeypatch) -> list[str]:
    """The S3 keys every store made from now on downloads (boto3's own event hooks)."""
    import boto3

    keys: list[str] = []
    client = boto3.client

    def spying_client(*args, **kwargs):
        s3 = client(*args, **kwargs)
        s3.meta.events.register("before-parameter-build.s3.GetObject", lambda params, **_: keys.append(params["Key"]))
        return s3

    monkeypatch.setattr("limit.execution.store.boto3.client", spying_client)
    return keys


def test_a_retry_resumes_from_the_newest_state_whose_upload_completed(limit_env: Path, s3_env: str, monkeypatch):
    """Killed while checkpoint-10 was uploading (its trainer_state.json, written last, never arrived)."""
    import boto3

    from limit.execution.context import StepContext
    from limit.execution.store import Store

    monkeypatch.setenv("LIMIT_ARTIFACTS", f"s3://{s3_env}/artifacts")
    ref = "finetune/33333333333333333333"
    s3 = boto3.client("s3")
    for name in ("checkpoint-5/optimizer.pt", "checkpoint-5/trainer_state.json", "checkpoint-10/optimizer.pt"):
        s3.put_object(Bucket=s3_env, Key=f"artifacts/{ref}/resume/{name}", Body=b"{}")
    store = Store.open()
    ctx = StepContext(ref=ref, out=store.begin(ref), store=store)

    finetune_module.restore_checkpoint(ctx)

    assert sorted(p.name for p in (ctx.out / "resume").iterdir()) == ["checkpoint-5"]
    assert trainer_module.last_checkpoint(ctx.out / "resume").name == "checkpoint-5"


def test_deepspeed_config_follows_the_spec():
    from limit.spec.study import TrainSpec

    config = trainer_module.deepspeed_config(TrainSpec(gpus=8, zero_stage=3, precision="bf16", micro_batch_size=2))
    assert config["zero_optimization"]["stage"] == 3 and config["bf16"] == {"enabled": True}
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]  # full weights per epoch
    assert config["train_micro_batch_size_per_gpu"] == "auto"  # filled from TrainingArguments by Trainer
    assert "optimizer" not in config and "scheduler" not in config  # Trainer builds both from the spec


class DataParallel:
    """DeepSpeed's seam for the world size it checks batch sizes against (its `mpu`)."""

    def __init__(self, size: int):
        self.size = size

    def get_data_parallel_world_size(self) -> int:
        return self.size


def test_shipped_gpu_finetunes_pass_deepspeeds_own_config_check(monkeypatch):
    """full's finetunes, their "auto" values filled as Trainer fills them, through DeepSpeed's DeepSpeedConfig:
    7B on ZeRO-2 in one pass (no accumulation), 30B on ZeRO-3 accumulating 9 micro-steps in fp32."""
    deepspeed_config = pytest.importorskip("deepspeed.runtime.config", reason="DeepSpeed (the gpu extra)")
    monkeypatch.setattr(deepspeed_config.dist, "get_rank", lambda: 0)  # no process group on this machine
    plan = build_plan(load_study("full"))
    expected = {"finetune-mpt-7b-lima": (2, 1, None), "finetune-mpt-30b-lima": (3, 9, "fp32")}
    for step_id, (stage, accumulation, accum_dtype) in expected.items():
        train = plan.steps[step_id].input.train
        config = trainer_module.deepspeed_config(train)
        filled = config | {
            "train_batch_size": train.global_batch_size,
            "train_micro_batch_size_per_gpu": train.micro_batch_size,
            "gradient_accumulation_steps": train.accumulation,
            "gradient_clipping": train.grad_clip,
        }
        filled["zero_optimization"] = {
            k: (1_000_000 if v == "auto" else v) for k, v in config["zero_optimization"].items()
        }
        checked = deepspeed_config.DeepSpeedConfig(filled, mpu=DataParallel(train.gpus))
        assert checked.zero_optimization_stage == stage and checked.gradient_accumulation_steps == accumulation
        assert checked.train_batch_size == train.global_batch_size and checked.bfloat16_config.enabled
        assert (checked.grad_accum_dtype or None) == accum_dtype


def test_stage_zero_never_asks_for_fp32_accumulation():
    """DeepSpeed refuses bf16 weights with fp32 accumulation outside ZeRO ("unsupported mix")."""
    from limit.spec.study import TrainSpec

    config = trainer_module.deepspeed_config(TrainSpec(gpus=8, zero_stage=0, micro_batch_size=1))
    assert "data_types" not in config
    with pytest.raises(LimitError, match="zero_stage is 'auto'"):
        trainer_module.deepspeed_config(TrainSpec(gpus=8, micro_batch_size=1))


def test_every_gpu_finetune_runs_under_torchrun_one_gpu_included():
    from limit.runner import processes

    plan = build_plan(load_study("tiny"))
    inp = plan.steps["finetune-tiny-lima"].input
    assert processes(inp) == 0  # CPU: in this process
    one_gpu = inp.model_copy(update={"train": inp.train.model_copy(update={"gpus": 1})})
    assert processes(one_gpu) == 1  # no MPI discovery: torchrun's environment


def test_checkpoint_every_second_epoch_and_the_last(limit_env: Path, tiny_steps):
    """The authors saved every second epoch: 3 epochs at checkpoint_every 2 leave epochs 2 and 3 only."""
    prepare, finetune = tiny_steps
    run(prepare)
    train = finetune.input.train.model_copy(update={"epochs": 3, "checkpoint_every": 2})
    inp = finetune.input.model_copy(update={"train": train})
    summary = run_step("finetune", inp.model_dump_json())

    out = limit_env / "artifacts" / f"finetune/{step_key('finetune', inp)}"
    assert summary["steps"] == 3 * STEPS_PER_EPOCH
    assert sorted(p.name for p in out.glob("epoch-*")) == ["epoch-2", "epoch-3"]
    assert train.checkpoint_epochs() == [2, 3]


def test_full_scores_every_second_epoch():
    plan = build_plan(load_study("full"))
    gauntlets = [s for s in plan.by_kind("gauntlet") if s.input.finetune == plan.steps["finetune-mpt-7b-lima"].ref]
    assert sorted(s.input.epoch for s in gauntlets) == [2, 4, 6, 8, 10]
    assert len(plan.by_kind("gauntlet")) == 8 * 5 + 2


def test_the_worst_case_probe_records_its_numbers_and_leaves_the_losses_as_without_it(
    limit_env: Path, tiny_steps, monkeypatch
):
    """The largest micro-batch goes forward and backward before the first step (zero gradients, RNG restored):
    its peak, tokens/s and ETA are in the summary and MLflow, and training's per-step losses are unchanged."""
    from limit.training.probe import WorstCaseProbe

    prepare, finetune = tiny_steps
    run(prepare)
    summary = run(finetune)
    assert summary["probe_tokens"] > 0 and summary["probe_tokens_per_second"] > 0 and summary["probe_eta_s"] > 0
    assert 0 < summary["probe_peak_gib"] < summary["probe_capacity_gib"]
    assert summary["probe_planned_gib"] == summary["memory_estimate_gib"]
    [logged] = finetune_runs()
    assert logged.data.metrics["probe_peak_gib"] == summary["probe_peak_gib"]
    from limit.execution.store import Store

    attempt = Store.open().attempt(finetune.ref)  # what `limit status` shows while the finetune runs
    assert attempt["probe"]["peak_gib"] == summary["probe_peak_gib"] and attempt["progress"]["what"] == "train"

    monkeypatch.setenv("LIMIT_ARTIFACTS", str(limit_env / "unprobed"))
    monkeypatch.setattr(WorstCaseProbe, "on_train_begin", lambda self, args, state, control, **kwargs: control)
    run(prepare)
    run(finetune)
    probed = logged_losses(limit_env / "artifacts" / finetune.ref)
    assert len(probed) == 2 * STEPS_PER_EPOCH and probed == logged_losses(limit_env / "unprobed" / finetune.ref)


def test_a_finetune_that_cannot_fit_is_refused_in_one_line_before_its_first_step(limit_env: Path, tiny_steps):
    import subprocess
    import sys

    from conftest import run_env

    prepare, finetune = tiny_steps
    run(prepare)
    argv = [sys.executable, "-m", "limit.cli", "step", "finetune", "--input", finetune.input.model_dump_json()]
    result = subprocess.run(argv, capture_output=True, text=True, env=run_env(LIMIT_DEVICE_MEMORY_GIB="0.001"))
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "the largest micro-batch" in last and "over its 0.00 GiB" in last and "training.micro_batch_size" in last
    assert "Traceback" not in result.stderr
    partial = limit_env / "artifacts" / f"{finetune.ref}.partial"
    assert not (limit_env / "artifacts" / finetune.ref).exists()
    assert not list(partial.glob("resume/checkpoint-*")) and '"loss"' not in result.stderr
