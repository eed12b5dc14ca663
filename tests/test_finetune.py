"""prepare + finetune steps through the runner on the tiny fixtures: loadable epoch checkpoints, loss and
learning rate per step in MLflow, the manifest, and resuming a killed finetune from its last epoch."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from limit.plan import build_plan
from limit.runner import run_step
from limit.spec import load_study
from limit.steps import finetune as finetune_module
from limit.store import MANIFEST

STEPS_PER_EPOCH = 5  # 37 single-turn LIMA rows, global batch 8


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


def test_finetune_writes_loadable_epochs_and_logs_every_step(limit_env: Path, tiny_steps):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prepare, finetune = tiny_steps
    prepared = run(prepare)
    assert prepared["rows"] == 37 and prepared["dropped_multi_turn"] == 3

    summary = run(finetune)

    out = limit_env / "artifacts" / finetune.ref
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["summary"] == summary
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "epoch-1", "epoch-2", "train_log.json"]
    for epoch in (1, 2):
        model = AutoModelForCausalLM.from_pretrained(out / f"epoch-{epoch}")
        tokenizer = AutoTokenizer.from_pretrained(out / f"epoch-{epoch}")
        assert model.config.model_type == "mpt" and tokenizer.eos_token == "<|endoftext|>"
    assert summary["steps"] == 2 * STEPS_PER_EPOCH
    assert summary["train_tokens"] > 0 and summary["tokens_per_second"] > 0

    [run_] = finetune_runs()
    losses = history(run_, "loss")
    assert [step for step, _ in losses] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert losses[-1][1] < losses[0][1]  # it learns something
    lrs = dict(history(run_, "learning_rate"))
    assert max(lrs.values()) == pytest.approx(1e-3)  # tiny.yaml's lr, reached after warmup_steps 2
    assert lrs[1] == 0.0 and lrs[2 * STEPS_PER_EPOCH] < lrs[3]


class Killed(Exception):
    """Stands in for the pod being killed right after epoch 1 was saved."""


def test_killed_finetune_resumes_from_its_last_epoch(limit_env: Path, tiny_steps, monkeypatch):
    prepare, finetune = tiny_steps
    run(prepare)
    export = finetune_module.EpochExport.on_save

    def save_then_die(self, args, state, control, **kwargs):
        export(self, args, state, control, **kwargs)
        raise Killed

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(finetune_module.EpochExport, "on_save", save_then_die)
        run(finetune)
    partial = limit_env / "artifacts" / f"{finetune.ref}.partial"
    assert (partial / "epoch-1" / "model.safetensors").is_file()
    assert (partial / "resume" / f"checkpoint-{STEPS_PER_EPOCH}").is_dir()
    assert not (partial / "epoch-2").exists()
    assert not (limit_env / "artifacts" / finetune.ref).exists()  # nothing looks complete

    summary = run(finetune)

    assert summary["resumed_from_step"] == STEPS_PER_EPOCH and summary["steps"] == 2 * STEPS_PER_EPOCH
    out = limit_env / "artifacts" / finetune.ref
    assert (out / MANIFEST).is_file() and not (out / "resume").exists()
    killed, resumed = finetune_runs()
    assert [s for s, _ in history(killed, "loss")] == list(range(1, STEPS_PER_EPOCH + 1))
    assert [s for s, _ in history(resumed, "loss")] == list(range(STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH + 1))
    # The schedule picks up where it stopped instead of warming up again.
    assert dict(history(resumed, "learning_rate"))[STEPS_PER_EPOCH + 1] < 1e-3


def test_multi_gpu_finetune_relaunches_itself_under_torchrun(limit_env: Path, tiny_steps, monkeypatch):
    _, finetune = tiny_steps
    train = finetune.input.train.model_copy(update={"gpus": 2, "global_batch_size": 8, "micro_batch_size": 4})
    inp = finetune.input.model_copy(update={"train": train})
    launched = []

    def execv(path, argv):
        launched.append(argv)
        raise Killed

    monkeypatch.setattr("limit.runner.os.execv", execv)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(Killed):
        run_step("finetune", inp.model_dump_json())

    [argv] = launched
    assert argv[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert argv[5:9] == ["-m", "limit.cli", "step", "finetune"]
    assert type(inp).model_validate_json(argv[-1]) == inp  # same input, so the same key
