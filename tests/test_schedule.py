"""The learning-rate schedule the Trainer builds from a TrainSpec: linear warmup, then linear decay to 0."""

from __future__ import annotations

import pytest

from limit.models.base import materialize_tiny
from limit.spec.study import TinyModel, TrainSpec
from limit.training.trainer import training_arguments


def expected_lr(step: int, lr: float, warmup: int, total: int) -> float:
    if step < warmup:
        return lr * step / warmup
    return lr * max(0.0, (total - step) / (total - warmup))


@pytest.mark.parametrize("optimizer", ["decoupled_adamw", "decoupled_lionw"])
def test_warmup_then_linear_to_zero(tmp_path, optimizer):
    from transformers import AutoModelForCausalLM, Trainer

    from limit.training.optimizers import optimizer_cls_and_kwargs

    train = TrainSpec(optimizer=optimizer, lr=1e-3, warmup_steps=4, precision="fp32", global_batch_size=1)
    model = AutoModelForCausalLM.from_pretrained(materialize_tiny(TinyModel(), tmp_path / "work"))
    trainer = Trainer(
        model=model,
        args=training_arguments(train, tmp_path / "out", run_name="schedule"),
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(train),
    )
    total = 20
    trainer.create_optimizer_and_scheduler(num_training_steps=total)

    lrs = []
    for _ in range(total + 1):
        lrs.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()

    assert lrs == pytest.approx([expected_lr(s, 1e-3, 4, total) for s in range(total + 1)])
    assert lrs[4] == pytest.approx(1e-3)  # peak right after warmup
    assert lrs[total] == 0.0  # decayed to zero at the end of the last epoch


def test_batch_arithmetic_reaches_the_global_batch(tmp_path):
    args = training_arguments(
        TrainSpec(global_batch_size=48, micro_batch_size=2, precision="fp32"), tmp_path, run_name="x"
    )
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 48
