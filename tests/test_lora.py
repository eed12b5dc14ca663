"""LoRA (training.method: lora): only the adapters train, the base's weights stay bit-identical, each epoch is
exported merged (a plain MPT, the same logits as base + adapters), packing changes no loss, a killed LoRA
finetune resumes from its adapters, and the planner counts a frozen base plus the adapters' state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from limit.costs import Shape, adapter_params, finetune_flops, finetune_memory
from limit.plan import build_plan
from limit.runner import run_step
from limit.spec.study import LoraSpec, TrainSpec, load_study
from limit.steps import finetune as finetune_module
from limit.steps import step_key

LORA = {"method": "lora", "lora": {"r": 4, "alpha": 8.0, "target_modules": "all-linear"}, "lr": 1e-2}


def lora_finetune(limit_env: Path, **train):
    plan = build_plan(load_study("tiny"))
    prepare, step = plan.steps["prepare-lima"], plan.steps["finetune-tiny-lima"]
    run_step("prepare", prepare.input.model_dump_json())
    inp = step.input.model_copy(
        update={"train": TrainSpec.model_validate(step.input.train.model_dump() | LORA | train)}
    )
    return inp, limit_env / "artifacts" / "finetune" / step_key("finetune", inp)


def losses(folder: Path) -> list[tuple[int, float]]:
    history = json.loads((folder / "train_log.json").read_text())["log_history"]
    return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]


def keep_the_trainer(monkeypatch) -> list:
    trainers = []
    make = finetune_module.make_trainer

    def keeping(*args, **kwargs):
        trainers.append(make(*args, **kwargs))
        return trainers[-1]

    monkeypatch.setattr(finetune_module, "make_trainer", keeping)
    return trainers


def test_lora_trains_adapters_only_and_exports_the_merged_model(limit_env: Path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from limit.models.base import materialize_tiny

    trainers = keep_the_trainer(monkeypatch)
    inp, out = lora_finetune(limit_env, packing=True)
    summary = run_step("finetune", inp.model_dump_json())
    [trainer] = trainers
    adapted = trainer.model.eval()

    base_folder = materialize_tiny(inp.model.tiny, limit_env)
    base = load_file(base_folder / "model.safetensors")
    frozen = {n: p for n, p in adapted.named_parameters() if not p.requires_grad}
    trained = {n: p for n, p in adapted.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)
    tiny = inp.model.tiny
    planned = adapter_params(Shape(tiny.d_model, tiny.n_layers, tiny.n_heads, tiny.vocab_size), inp.train.lora)
    assert summary["trainable_params"] == sum(p.numel() for p in trained.values()) == planned
    for name, tensor in frozen.items():  # base_model.model.<name> and <layer>.base_layer.weight under peft
        plain = name.removeprefix("base_model.model.").replace(".base_layer", "")
        assert torch.equal(tensor.detach(), base[plain]), name  # bit-identical after 10 steps
    assert any(p.abs().sum() > 0 for n, p in trained.items() if "lora_B" in n)  # B starts at zero: it moved

    epoch = out / "epoch-2"
    assert not {"adapter_model.safetensors", "adapter_config.json"} & {p.name for p in epoch.iterdir()}
    merged = AutoModelForCausalLM.from_pretrained(epoch).eval()
    assert type(merged).__name__ == "MptForCausalLM"
    ids = torch.tensor([[5, 17, 99, 3, 250, 8, 41]])
    with torch.no_grad():
        expected, got = adapted(input_ids=ids).logits, merged(input_ids=ids).logits
    assert (expected - got).abs().max() <= 1e-5
    assert not torch.allclose(got, AutoModelForCausalLM.from_pretrained(base_folder)(input_ids=ids).logits)


def test_lora_packed_and_padded_train_alike_and_a_killed_one_resumes_from_its_adapters(limit_env: Path, monkeypatch):
    from test_finetune import run_killed_after_first_epoch

    packed_inp, packed = lora_finetune(limit_env, packing=True)
    run_step("finetune", packed_inp.model_dump_json())
    padded_inp, padded = lora_finetune(limit_env, packing=False)
    run_killed_after_first_epoch(type("Step", (), {"kind": "finetune", "input": padded_inp}), monkeypatch)
    summary = run_step("finetune", padded_inp.model_dump_json())

    assert summary["resumed_from_step"] == 5
    steps_a, steps_b = losses(packed), losses(padded)
    assert [s for s, _ in steps_a] == [s for s, _ in steps_b] == list(range(1, 11))
    for (step, a), (_, b) in zip(steps_a, steps_b, strict=True):
        assert abs(a - b) <= 1e-4 * abs(b), (step, a, b)


def test_lora_spec_is_explicit_and_leaves_full_finetune_inputs_as_they_were():
    assert "method" not in TrainSpec().model_dump() and "lora" not in TrainSpec().model_dump()
    lora = TrainSpec(method="lora")
    assert lora.lora == LoraSpec() and lora.model_dump()["lora"]["r"] == 8  # the adapters are in the key
    assert TrainSpec.model_validate_json(lora.model_dump_json()) == lora
    with pytest.raises(ValueError, match="lora configures method lora"):
        TrainSpec(lora={"r": 4})
    with pytest.raises(ValueError, match="distinct modules"):
        LoraSpec(target_modules=[])


def test_the_planner_counts_a_frozen_base_and_the_adapters_state():
    shape = Shape(4096, 32, 32, 50432)
    full = TrainSpec(gpus=8, micro_batch_size=1, zero_stage=2, global_batch_size=8)
    lora = full.model_copy(update={"method": "lora", "lora": LoraSpec(r=8)})
    adapters = adapter_params(shape, LoraSpec(r=8))
    assert adapters == 32 * 8 * (4 + 2 + 5 + 5) * 4096  # Wqkv, out_proj, up_proj, down_proj
    state = {t: finetune_memory(shape, t, 2, 2048).terms["model state"] for t in (full, lora)}
    p = shape.params
    assert state[full] == pytest.approx(p * 2 + p * (2 + 4 + 8) / 8)  # ZeRO-2, bf16: the module's own weights
    assert state[lora] == pytest.approx(p * 2 + adapters * 2 + adapters * (2 + 4 + 8) / 8)  # frozen base in bf16
    ratio = finetune_flops(shape, 1, 1000, LoraSpec(r=8)) / finetune_flops(shape, 1, 1000)
    assert 0.66 < ratio < 0.72  # no weight gradients: 4P instead of 6P, plus attention and the adapters


def test_plan_summary_shows_full_and_lora_side_by_side(capsys):
    from limit.cli import main as cli

    assert cli(["plan", "paper-7b", "--summary"]) == 0
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.strip().startswith("mpt-7b:")]
    full, lora = line.split("|")
    assert "full" in full and "GiB/GPU" in full and "GPU-hours" in full and "lora" in lora
    gib = lambda part: float(part.split("GiB")[0].split()[-1])  # noqa: E731
    hours = lambda part: float(part.split("GPU-hours")[0].split("~")[-1].strip(" ,"))  # noqa: E731
    assert gib(lora) < gib(full) and hours(lora) < hours(full)
