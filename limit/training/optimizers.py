"""The paper's optimizers, as (class, kwargs) pairs for `Trainer(optimizer_cls_and_kwargs=...)`.

LLM Foundry trains with composer's *decoupled* optimizers, whose weight decay per step is
`wd * lr_t / lr_0` (scaled by the schedule, not by the learning rate itself), while torch's AdamW decays
by `lr_t * wd`. Dividing the decay by the initial learning rate makes torch's update identical to
composer's; lion-pytorch does that division itself with `decoupled_weight_decay=True`.
The paper sets weight decay to 0, where all variants coincide.

One difference remains: Trainer exempts biases and norm weights from weight decay, composer decays every
parameter. At weight decay 0 (the paper) it does not matter.
"""

from __future__ import annotations

from typing import Any

from limit.spec.study import TrainSpec


def trainer_weight_decay(train: TrainSpec) -> float:
    """The `TrainingArguments.weight_decay` that gives composer's decoupled decay of `train.weight_decay`."""
    if train.optimizer == "decoupled_adamw":
        return train.weight_decay / train.lr
    return train.weight_decay


def optimizer_cls_and_kwargs(train: TrainSpec) -> tuple[type, dict[str, Any]]:
    if train.optimizer == "decoupled_adamw":
        from torch.optim import AdamW

        return AdamW, {"lr": train.lr, "betas": train.betas, "eps": train.eps}
    if train.optimizer == "decoupled_lionw":
        from lion_pytorch import Lion

        # Lion has no epsilon: its update is the sign of the interpolated gradient.
        return Lion, {"lr": train.lr, "betas": train.betas, "decoupled_weight_decay": True}
    raise ValueError(f"unknown optimizer {train.optimizer}")
