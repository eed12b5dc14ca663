"""Packing changes the speed, never the numbers: the tiny finetune packed and padded takes the same optimizer
steps, the same per-step losses and ends in the same weights; pad-to-max (the paper's setup) too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from limit.plan import build_plan
from limit.runner import run_step
from limit.spec.study import TrainSpec, load_study
from limit.steps import step_key
from limit.training.examples import IGNORE_INDEX
from limit.training.trainer import collator

RELATIVE = 1e-4


def finetune(limit_env: Path, **train) -> tuple[Path, dict]:
    """The tiny study's LIMA finetune with `train` overrides: its output folder and summary."""
    plan = build_plan(load_study("tiny"))
    prepare, step = plan.steps["prepare-lima"], plan.steps["finetune-tiny-lima"]
    run_step("prepare", prepare.input.model_dump_json())
    inp = step.input.model_copy(update={"train": step.input.train.model_copy(update=train)})
    summary = run_step("finetune", inp.model_dump_json())
    return limit_env / "artifacts" / "finetune" / step_key("finetune", inp), summary


def losses(folder: Path) -> list[tuple[int, float]]:
    history = json.loads((folder / "train_log.json").read_text())["log_history"]
    return [(entry["step"], entry["loss"]) for entry in history if "loss" in entry]


def assert_same_training(a: Path, b: Path) -> None:
    steps_a, steps_b = losses(a), losses(b)
    assert [s for s, _ in steps_a] == [s for s, _ in steps_b]
    for (step, loss_a), (_, loss_b) in zip(steps_a, steps_b, strict=True):
        assert abs(loss_a - loss_b) <= RELATIVE * abs(loss_b), (step, loss_a, loss_b)
    for epoch in (1, 2):
        weights_a = load_file(a / f"epoch-{epoch}" / "model.safetensors")
        weights_b = load_file(b / f"epoch-{epoch}" / "model.safetensors")
        for name, tensor in weights_b.items():
            assert torch.allclose(weights_a[name], tensor, rtol=RELATIVE, atol=RELATIVE), (epoch, name)


def test_packed_padded_and_padded_to_max_train_alike(limit_env: Path):
    packed, summary_packed = finetune(limit_env, packing=True)
    padded, summary_padded = finetune(limit_env, packing=False)
    to_max, _ = finetune(limit_env, packing=False, pad_to_max=True)

    assert summary_packed["steps"] == summary_padded["steps"] == 10
    assert summary_packed["train_tokens"] == summary_padded["train_tokens"]  # real tokens, counted alike
    assert_same_training(packed, padded)
    assert_same_training(to_max, padded)


def test_packed_batch_counts_the_same_loss_tokens_as_the_padded_one(tmp_path: Path):
    """Trainer normalises the loss by the labels it counts (labels[..., 1:] != -100): the same either way."""
    from limit.models.base import load_tokenizer, materialize_tiny

    rows = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
    features = [{"input_ids": r, "attention_mask": [1] * len(r), "labels": [IGNORE_INDEX, *r[1:]]} for r in rows]
    tokenizer = load_tokenizer(str(materialize_tiny(load_study("tiny").models["tiny-mpt"].tiny, tmp_path)))
    packed = collator(TrainSpec(packing=True), tokenizer)(features)
    padded = collator(TrainSpec(packing=False), tokenizer)(features)

    assert packed["input_ids"].shape == (1, 9) and packed["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 0, 1, 2]]
    count = lambda batch: int((batch["labels"][..., 1:] != IGNORE_INDEX).sum())  # noqa: E731
    assert count(packed) == count(padded) == 6


def test_pad_to_max_needs_packing_off():
    with pytest.raises(ValueError, match="pad_to_max pads every row to max_seq_len: set packing: false"):
        TrainSpec(pad_to_max=True)
