"""The paper's optimizers: composer's decoupled weight decay (scaled by lr_t / lr_0, not by lr_t)."""

from __future__ import annotations

import pytest
import torch

from limit.spec.study import TrainSpec
from limit.training.optimizers import optimizer_cls_and_kwargs, trainer_weight_decay


@pytest.mark.parametrize("name", ["decoupled_adamw", "decoupled_lionw"])
def test_weight_decay_is_decoupled_like_composer(name):
    train = TrainSpec(optimizer=name, lr=1e-3, weight_decay=0.1)
    cls, kwargs = optimizer_cls_and_kwargs(train)
    param = torch.nn.Parameter(torch.ones(3))
    # As Trainer builds it: the decayed group carries `TrainingArguments.weight_decay`.
    optimizer = cls([{"params": [param], "weight_decay": trainer_weight_decay(train)}], **kwargs)
    param.grad = torch.zeros(3)  # a zero gradient moves neither optimizer: only the decay acts

    optimizer.param_groups[0]["lr"] = train.lr / 2  # mid-schedule
    optimizer.step()

    # composer: p <- p * (1 - wd * lr_t / lr_0)
    assert param.detach() == pytest.approx(torch.full((3,), 1 - 0.1 * 0.5))


def test_paper_hyperparameters_reach_the_optimizers():
    cls, kwargs = optimizer_cls_and_kwargs(TrainSpec())
    assert cls is torch.optim.AdamW
    assert kwargs == {"lr": 5e-6, "betas": (0.9, 0.99), "eps": 1e-8}

    cls, kwargs = optimizer_cls_and_kwargs(TrainSpec(optimizer="decoupled_lionw", lr=1e-6, betas=(0.9, 0.95)))
    assert cls.__name__ == "Lion"
    assert kwargs == {"lr": 1e-6, "betas": (0.9, 0.95), "decoupled_weight_decay": True}
