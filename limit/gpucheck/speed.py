"""Stage `speed`: training throughput and memory of MPT shapes, packed vs padded, flex vs sdpa vs eager.

A 1B-class MPT at 2048 tokens (6 rows a micro-batch) and an MPT-7B-shaped model with two layers at 8192
(2 rows), randomly initialised. fp32 weights, gradients and AdamW states with bf16 autocast on CUDA (the
mixed precision DeepSpeed's bf16 mode keeps), fp32 on CPU; activation checkpointing as the finetune runs it.
Rows are drawn from LIMA-like lengths: `padded` pads the micro-batch to its longest row, `packed`
concatenates it. Each model is built once per attention and measured packed then padded: one step warms up
(and compiles), then `steps` are timed. Per case: real tokens/s, MFU against the card's dense bf16 peak (6 x
parameters + 6 x layers x d_model x mean row per real token), peak memory, and the planner's estimate of it.
A case that fails (out of memory or otherwise) is recorded with its error; results are saved after each.
"""

from __future__ import annotations

import math
import time

import torch

from limit.costs import Shape, card_peak_tflops, finetune_memory
from limit.gpucheck.context import CheckContext
from limit.gpucheck.models import enable_checkpointing, random_mpt
from limit.models.mpt.attention import install
from limit.spec.study import TrainSpec

SHAPES = {  # d_model, n_heads, n_layers, vocab
    "mpt-1b": (2048, 16, 24, 50432),
    "mpt-7b-2layers": (4096, 32, 2, 50432),
    "tiny": (64, 4, 2, 512),
}
CASES = [("mpt-1b", 2048, 6, ("flex", "sdpa", "eager")), ("mpt-7b-2layers", 8192, 2, ("flex", "sdpa"))]
SMOKE_CASES = [("tiny", 256, 3, ("sdpa", "eager"))]
LIMA_LIKE = (620, 0.6)  # log-normal median and sigma of row lengths


def run(ctx: CheckContext) -> dict:
    steps = 1 if ctx.smoke else 3
    peak = card_peak_tflops(torch.cuda.get_device_name()) if ctx.cuda else None
    result: dict = {"peak_bf16_tflops": peak, "steps": steps, "cases": []}
    for shape_name, seq_len, rows, attentions in SMOKE_CASES if ctx.smoke else CASES:
        for attention in attentions:
            for case in measure_model(ctx, shape_name, seq_len, rows, attention, steps, peak):
                result["cases"].append(case)
                ctx.save(result)
    failed = [c for c in result["cases"] if "error" in c]
    result["ok"] = not failed
    result["headline"] = headline(result["cases"]) + (f"; {len(failed)} failed" if failed else "")
    return result


def measure_model(ctx: CheckContext, shape_name: str, seq_len: int, rows: int, attention: str, steps: int, peak):
    d_model, n_heads, n_layers, vocab = SHAPES[shape_name]
    model = install(random_mpt(d_model, n_heads, n_layers, vocab, ctx.device).float(), attention)
    enable_checkpointing(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    try:
        for packed in (True, False):
            case = {"shape": shape_name, "attention": attention, "packed": packed, "seq_len": seq_len, "rows": rows}
            try:
                case |= measure(model, optimizer, ctx, case, steps, peak)
            except Exception as e:  # recorded; the next case still runs
                case["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            optimizer.zero_grad(set_to_none=True)
            yield case
    finally:
        del model, optimizer
        if ctx.cuda:
            torch.cuda.empty_cache()


def measure(model, optimizer, ctx: CheckContext, case: dict, steps: int, peak) -> dict:
    lengths = [row_lengths(case["rows"], case["seq_len"], seed) for seed in range(steps + 1)]
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = 0.0
    for i, step_lengths in enumerate(lengths):
        inputs = batch(step_lengths, model.config.vocab_size, case["packed"], ctx.device)
        sync(ctx)
        started = time.perf_counter()
        with torch.autocast(ctx.device, dtype=torch.bfloat16, enabled=ctx.cuda):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(ctx)
        if i:  # the first step compiles and warms up
            seconds += time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    real = sum(sum(step) for step in lengths[1:])
    config = model.config
    flops = real * (6 * params + 6 * config.n_layers * config.d_model * real / (case["rows"] * steps))
    planned = planner_peak(config, case, max(max(s) for s in lengths), ctx.device)
    return {
        "params": params,
        "real_tokens_per_s": round(real / seconds, 1),
        "mfu": round(flops / seconds / (peak * 1e12), 4) if peak else None,
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3) if ctx.cuda else None,
        "planned_memory_gib": round(planned, 3),
    }


def planner_peak(config, case: dict, longest: int, device: str) -> float:
    """The planner's finetune estimate for this case (one GPU, no DeepSpeed: ZeRO stage 0), allocator terms only."""
    shape = Shape(config.d_model, config.n_layers, config.n_heads, config.vocab_size, case["seq_len"])
    train = TrainSpec(
        precision="bf16" if device == "cuda" else "fp32",
        gpus=1 if device == "cuda" else 0,
        zero_stage=0,
        micro_batch_size=case["rows"],
        global_batch_size=case["rows"],
        max_seq_len=case["seq_len"],
        gradient_checkpointing=True,
        packing=case["packed"],
        attention=case["attention"],
    )
    memory = finetune_memory(shape, train, 0, longest, device)
    return (memory.total - memory.terms["runtime"]) / 2**30


def headline(cases: list[dict]) -> str:
    ok = {(c["shape"], c["attention"], c["packed"]): c for c in cases if "error" not in c}
    parts = []
    for (shape, attention, packed), case in ok.items():
        padded = ok.get((shape, attention, False))
        if packed and padded:
            parts.append(
                f"{shape} {attention} packed/padded {case['real_tokens_per_s'] / padded['real_tokens_per_s']:.2f}x"
            )
    mfus = [c["mfu"] for c in ok.values() if c.get("mfu")]
    return ", ".join(parts) + (f"; best MFU {max(mfus):.1%}" if mfus else "")


def row_lengths(count: int, seq_len: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    median, sigma = LIMA_LIKE
    lengths = torch.exp(math.log(median) + sigma * torch.randn(count, generator=generator)).long()
    return lengths.clamp(16, seq_len).tolist()


def batch(lengths: list[int], vocab: int, packed: bool, device: str) -> dict[str, torch.Tensor]:
    rows = [torch.randint(1, vocab, (n,)) for n in lengths]
    if packed:
        ids = torch.cat(rows)[None]
        positions = torch.cat([torch.arange(n) for n in lengths])[None]
        return {"input_ids": ids.to(device), "position_ids": positions.to(device), "labels": ids.to(device)}
    width = max(lengths)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def sync(ctx: CheckContext) -> None:
    if ctx.cuda:
        torch.cuda.synchronize()
