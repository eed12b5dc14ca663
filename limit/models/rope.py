"""Exact packing for the RoPE families (Llama, Mistral, Qwen2, Qwen3) through transformers' own attention.

Training: a packed row is transformers' padding-free form, `position_ids` restarting at 0 for every document
and no attention mask. transformers then builds a mask that keeps documents apart (sdpa, eager, flex), or
flash-attention reads the document boundaries from the positions (varlen). It does so only when the forward
has no KV cache, and a training forward makes one whenever the config says `use_cache` (a DynamicCache
nobody reads): its documents would then attend to each other (measured: logits off by 0.6 on the tiny
Llama). `install` makes every packed forward cacheless.

Scoring (the packed gauntlet): rows of documents whose continuations branch off a shared context. Each
token's RoPE position is the one it would have directly after its context, and attention goes through
`document_attention` (registered with transformers' AttentionInterface as "limit_documents"): document by
document, each through transformers' sdpa with the `Layout`'s mask of documents and branches, so a row
costs the sum of its documents' squares, never the square of the row.
"""

from __future__ import annotations

import importlib.util

import torch

from limit.errors import LimitError
from limit.models.families import ROPE_FAMILIES

# training.attention -> transformers' attn_implementation
KERNELS = {"sdpa": "sdpa", "eager": "eager", "flex": "flex_attention", "flash": "flash_attention_2"}
SCORING = "limit_documents"


def is_rope(model) -> bool:
    return getattr(model.config, "model_type", None) in ROPE_FAMILIES


def resolve(implementation: str, device: torch.device | str) -> str:
    """`auto`: flash-attention's varlen kernel on CUDA where flash_attn is installed (exact and linear in the
    row), else sdpa with transformers' document mask."""
    cuda = torch.device(device).type == "cuda"
    flash = cuda and importlib.util.find_spec("flash_attn") is not None
    if implementation == "auto":
        return "flash" if flash else "sdpa"
    if implementation not in KERNELS:
        raise LimitError(f"attention: unknown implementation '{implementation}' (known: auto, {', '.join(KERNELS)})")
    if implementation == "flash" and not flash:
        raise LimitError("attention: flash needs CUDA and the flash_attn package: use attention sdpa or auto")
    if implementation == "flex" and not cuda:
        raise LimitError("attention: flex has no CPU backward: use attention sdpa or auto")
    return implementation


def _cacheless_when_packed(module, args, kwargs):
    packed = kwargs.get("position_ids") is not None and kwargs.get("attention_mask") is None
    if packed and kwargs.get("cache") is None and kwargs.get("past_key_values") is None:
        kwargs["use_cache"] = False
    return args, kwargs


def install(model, implementation: str, device: torch.device | str) -> str:
    """Make a loaded RoPE model train packed rows exactly through `implementation`; returns the kernel's name."""
    if not is_rope(model):
        raise LimitError(f"attention: {type(model).__name__} is not of a RoPE family ({', '.join(ROPE_FAMILIES)})")
    kernel = resolve(implementation, device)
    model.set_attn_implementation(KERNELS[kernel])
    if not getattr(model, "_limit_packed_hook", False):
        model.register_forward_pre_hook(_cacheless_when_packed, with_kwargs=True)
        model._limit_packed_hook = True
    return kernel


def slides(config) -> bool:
    """Whether some layer attends through a sliding window (Mistral v0.1, Qwen with use_sliding_window)."""
    if getattr(config, "sliding_window", None) is None:
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return "sliding_attention" in layer_types
    return getattr(config, "use_sliding_window", True)


def document_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, layout=None, **kwargs):
    """transformers' sdpa, one document (with its branches) at a time, as `layout` (limit.models.mpt.attention's
    `Layout`: documents, positions, branches) says; padding (document 0) attends to nothing."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if layout is None:
        raise LimitError("attention: limit_documents attends through a Layout: pass layout= to the forward")
    out = query.new_zeros(query.shape[0], query.shape[2], query.shape[1], query.shape[3])
    for row, start, end, mask in _document_masks(layout, query.shape[2]):
        piece = (slice(row, row + 1), slice(None), slice(start, end))
        attended, _ = sdpa_attention_forward(
            module, query[piece], key[piece], value[piece], mask, dropout, scaling, is_causal=mask is None
        )
        out[row : row + 1, start:end] = attended
    return out, None


def _document_masks(layout, length: int) -> list[tuple[int, int, int, torch.Tensor | None]]:
    """(row, start, end, mask) of every document, the mask None where it is plain causal: built once per
    layout, as every layer of a forward asks for the same."""
    if "documents" not in layout._biases:
        spans = layout.spans or [(row, 0, length) for row in range(layout.doc.shape[0])]
        found = []
        for row, start, end in spans:
            part = layout.part(row, start, end)
            found.append((row, start, end, None if part.causal else part.visible()[:, None]))
        layout._biases["documents"] = found
    return layout._biases["documents"]


def scoring_copy(model):
    """`model` (shared weights, its own config) attending through `document_attention`."""
    from transformers import AttentionInterface

    if slides(model.config):
        raise LimitError(
            f"gauntlet.backend: packed: {type(model).__name__} attends through a sliding window: use backend hf"
        )
    AttentionInterface.register(SCORING, document_attention)
    model.config._attn_implementation = SCORING
    return model
