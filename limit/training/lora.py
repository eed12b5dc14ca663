"""LoRA through peft: the base's weights frozen, low-rank adapters on its linear layers trained.

`with_adapters` wraps the loaded base in a `PeftModel` (Trainer then optimises only what requires grad, and
saves only the adapters in its checkpoints, which it also resumes from). `merge_checkpoint` makes each
epoch's export a plain transformers checkpoint: the base loaded again, the checkpoint's adapters merged
into its weights (W + B A alpha / r), saved as any finetune's epoch is, so every step after the finetune
loads it as it loads a full finetune's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from limit.spec.study import LoraSpec

# What a peft checkpoint holds beside the tokenizer: the adapters, their config, peft's model card.
ADAPTER_FILES = {"adapter_model.safetensors", "adapter_model.bin", "adapter_config.json", "README.md"}


def lora_config(spec: LoraSpec):
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=spec.target_modules,
        bias="none",
    )


def with_adapters(model, spec: LoraSpec, seed: int, gradient_checkpointing: bool):
    """The base wrapped with fresh adapters, A drawn from `seed` (B is zero: training starts at the base)."""
    from peft import get_peft_model
    from transformers import set_seed

    set_seed(seed)
    if gradient_checkpointing:  # reentrant checkpoints need an input that requires grad, or nothing flows back
        model.enable_input_require_grads()
    return get_peft_model(model, lora_config(spec))


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, all) parameters of a model (ZeRO-3's partitioned ones by their whole size)."""
    sizes = [(getattr(p, "ds_numel", None) or p.numel(), p.requires_grad) for p in model.parameters()]
    return sum(n for n, trains in sizes if trains), sum(n for n, _ in sizes)


@contextlib.contextmanager
def one_rank_loading() -> Iterator[None]:
    """Load a model on this rank alone. Under ZeRO-3 transformers partitions every model it loads across the
    ranks (`is_deepspeed_zero3_enabled` reads the active DeepSpeed config): rank 0 loading the base to merge
    into would wait forever on ranks that are training. The config is set aside while loading, then put back."""
    from transformers.integrations import deepspeed as hf_deepspeed

    active = hf_deepspeed._hf_deepspeed_config_weak_ref  # what is_deepspeed_zero3_enabled reads
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if active is not None and active() is not None:
            hf_deepspeed.set_hf_deepspeed_config(active())


def merge_checkpoint(checkpoint: Path, base, out: Path) -> None:
    """Save into `out` the `base` (loaded as training loaded it, not trained) with `checkpoint`'s adapters
    merged into its weights: config and weights of a plain model of the base's class."""
    from peft import PeftModel

    merged = PeftModel.from_pretrained(base, str(checkpoint)).merge_and_unload()
    merged.save_pretrained(out)
