"""Random MPTs of a given shape, built on the device, for the stages that need no trained weights."""

from __future__ import annotations

import torch
from transformers import MptConfig, MptForCausalLM


def random_mpt(d_model: int, n_heads: int, n_layers: int, vocab: int, device: str, max_seq_len: int = 8192):
    torch.manual_seed(0)
    config = MptConfig(d_model=d_model, n_heads=n_heads, n_layers=n_layers, vocab_size=vocab, max_seq_len=max_seq_len)
    with torch.device(device):
        return MptForCausalLM(config)


def enable_checkpointing(model) -> None:
    """Reentrant activation checkpointing, as the finetune runs it (`activation_checkpointing_enable` from
    transformers 5.23, `gradient_checkpointing_enable` before)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable({"use_reentrant": True})
