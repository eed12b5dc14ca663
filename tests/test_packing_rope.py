"""Packing is exact for the RoPE families too: the tiny Llama and tiny Qwen finetunes packed and padded take
the same optimizer steps and the same per-step losses and end in the same weights (transformers' own
document mask, made cacheless by limit.models.rope), and a packed document never sees another one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from limit.models import rope
from limit.models.base import materialize_tiny
from limit.plan import build_plan
from limit.runner import run_step
from limit.spec.study import ModelSpec, TinyModel, load_study
from limit.steps import step_key

RELATIVE = 1e-4
FAMILIES = {"llama": TinyModel(arch="llama", n_kv_heads=2), "qwen2": TinyModel(arch="qwen2", n_kv_heads=2)}
EVERY_FAMILY = FAMILIES | {"qwen3": TinyModel(arch="qwen3", n_kv_heads=1), "mistral": TinyModel(arch="mistral")}


def finetune(limit_env: Path, tiny: TinyModel, **train) -> tuple[Path, dict]:
    """The tiny study's LIMA finetune (one epoch) of a tiny RoPE model: its output folder and summary."""
    plan = build_plan(load_study("tiny"))
    prepare, step = plan.steps["prepare-lima"], plan.steps["finetune-tiny-lima"]
    run_step("prepare", prepare.input.model_dump_json())
    changes = {"epochs": 1, **train}
    inp = step.input.model_copy(
        update={"model": ModelSpec(tiny=tiny), "train": step.input.train.model_copy(update=changes)}
    )
    summary = run_step("finetune", inp.model_dump_json())
    return limit_env / "artifacts" / "finetune" / step_key("finetune", inp), summary


def losses(folder: Path) -> list[tuple[int, float]]:
    history = json.loads((folder / "train_log.json").read_text())["log_history"]
    return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]


@pytest.mark.parametrize("arch", FAMILIES)
def test_packed_and_padded_train_alike(limit_env: Path, arch: str):
    packed, summary = finetune(limit_env, FAMILIES[arch], packing=True)
    padded, _ = finetune(limit_env, FAMILIES[arch], packing=False)

    assert summary["attention"] == "sdpa" and summary["steps"] == 5
    steps_packed, steps_padded = losses(packed), losses(padded)
    assert [s for s, _ in steps_packed] == [s for s, _ in steps_padded]
    for (step, a), (_, b) in zip(steps_packed, steps_padded, strict=True):
        assert abs(a - b) <= RELATIVE * abs(b), (step, a, b)
    weights_a, weights_b = (load_file(f / "epoch-1" / "model.safetensors") for f in (packed, padded))
    for name, tensor in weights_b.items():
        assert torch.allclose(weights_a[name], tensor, rtol=RELATIVE, atol=RELATIVE), name


@pytest.mark.parametrize("arch", EVERY_FAMILY)
def test_a_packed_document_sees_no_other(tmp_path: Path, arch: str):
    """Changing one document of a packed row leaves the others' logits as they were, and each equals the
    document's logits alone; as training runs it (train mode, the config's use_cache on)."""
    model = AutoModelForCausalLM.from_pretrained(materialize_tiny(EVERY_FAMILY[arch], tmp_path))
    assert rope.install(model, "auto", "cpu") == "sdpa" and model.config.use_cache
    model.train()  # dropout is 0 in the tiny configs: train mode changes nothing but the cache default
    docs = [[5, 6, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16]]

    def packed(documents: list[list[int]]) -> torch.Tensor:
        ids = torch.tensor([[t for d in documents for t in d]])
        positions = torch.tensor([[p for d in documents for p in range(len(d))]])
        with torch.no_grad():
            return model(input_ids=ids, position_ids=positions).logits[0]

    before = packed(docs)
    after = packed([docs[0], [40, 41, 42], docs[2]])
    assert torch.equal(before[:5], after[:5]) and torch.equal(before[8:], after[8:])
    assert not torch.allclose(before[5:8], after[5:8])
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([docs[2]])).logits[0]
    assert torch.allclose(before[8:], alone, atol=1e-5)
