"""MPT training throughput and memory on a GPU: eager vs sdpa vs flex, padded vs packed, at 2048 and 8192.

Needs torch and transformers only (and this repository's `limit/mpt`), so it runs on a bare GPU machine:

    PYTHONPATH=. python benchmarks/gpu.py --out gpu.json              # the whole grid, a few minutes
    PYTHONPATH=. python benchmarks/gpu.py --smoke --device cpu        # the plumbing, on any machine

Models are randomly initialised MPTs in bf16: a 1B-class full model, and MPT-7B / MPT-30B layer shapes with
two layers (per-layer memory and speed; the embedding is the full vocabulary). Each measurement trains a few
optimizer steps (AdamW, fp32 states) on micro-batches of rows drawn from LIMA-like lengths, cut at the
sequence length: `padded` pads the micro-batch to its longest row, `packed` concatenates it (document-local
attention). Reported per case: real (unpadded) tokens/s, MFU against the card's dense bf16 peak (model FLOPs
per real token: 6 x parameters + 6 x layers x d_model x mean row length, attention within documents), and
the peak memory torch allocated. A case that runs out of memory is reported as such, not skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from transformers import MptConfig, MptForCausalLM

from limit.mpt.attention import install

SHAPES = {  # d_model, n_heads, n_layers, vocab
    "mpt-1b": (2048, 16, 24, 50432),
    "mpt-7b-2layers": (4096, 32, 2, 50432),
    "mpt-30b-2layers": (7168, 64, 2, 50432),
}
SMOKE_SHAPES = {"tiny": (64, 4, 2, 512)}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}  # dense, SXM where it varies
LIMA_LIKE = (620, 0.6)  # log-normal median and sigma of row lengths


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def row_lengths(count: int, seq_len: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    median, sigma = LIMA_LIKE
    lengths = torch.exp(math.log(median) + sigma * torch.randn(count, generator=generator)).long()
    return lengths.clamp(16, seq_len).tolist()


def batch(lengths: list[int], vocab: int, packed: bool, device: torch.device) -> dict[str, torch.Tensor]:
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


def build(shape: tuple[int, int, int, int], attention: str, device: torch.device, dtype: torch.dtype):
    d_model, n_heads, n_layers, vocab = shape
    config = MptConfig(d_model=d_model, n_heads=n_heads, n_layers=n_layers, vocab_size=vocab, max_seq_len=8192)
    with torch.device(device):
        model = MptForCausalLM(config).to(dtype)
    install(model, attention)  # eager too: transformers' attention code, given the documents' mask
    model.gradient_checkpointing_enable()
    return model.train()


def measure(shape_name: str, shape, attention: str, packed: bool, seq_len: int, rows: int, steps: int, device, dtype):
    case = {"shape": shape_name, "attention": attention, "packed": packed, "seq_len": seq_len, "rows": rows}
    model = optimizer = None
    try:
        model = build(shape, attention, device, dtype)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        params = sum(p.numel() for p in model.parameters())
        lengths = [row_lengths(rows, seq_len, seed) for seed in range(steps + 1)]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = 0.0
        for i, step_lengths in enumerate(lengths):
            inputs = batch(step_lengths, shape[3], packed, device)
            _sync(device)
            started = time.perf_counter()
            model(**inputs).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _sync(device)
            if i:  # the first step compiles and warms up
                seconds += time.perf_counter() - started
        real = sum(sum(step) for step in lengths[1:])
        mean_row = real / (rows * steps)
        flops = real * (6 * params + 6 * shape[2] * shape[0] * mean_row)
        peak = peak_tflops(device)
        case |= {
            "params": params,
            "real_tokens_per_s": round(real / seconds, 1),
            "mfu": round(flops / seconds / (peak * 1e12), 4) if peak else None,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            if device.type == "cuda"
            else None,
        }
    except torch.OutOfMemoryError:
        case["error"] = "out of memory"
    finally:
        del model, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(json.dumps(case), flush=True)
    return case


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def grid(smoke: bool, device: torch.device) -> list[tuple]:
    """(shape name, shape, attention, packed, seq_len, rows per micro-batch)."""
    if smoke:
        implementations = ["eager", "sdpa"] + (["flex"] if device.type == "cuda" else [])
        return [("tiny", SMOKE_SHAPES["tiny"], a, p, 256, 3) for a in implementations for p in (False, True)]
    cases = []
    for name, shape in SHAPES.items():
        for seq_len, rows in ((2048, 6), (8192, 1 if "30b" in name else 2)):
            for attention in ("eager", "sdpa", "flex"):
                for packed in (False, True):
                    cases.append((name, shape, attention, packed, seq_len, rows))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench/gpu.json")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a tiny model, to check the script on any machine")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cases = [measure(*case, args.steps, device, dtype) for case in grid(args.smoke, device)]
    report = {
        "benchmark": "gpu",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "peak_bf16_tflops": peak_tflops(device),
        "torch": torch.__version__,
        "dtype": str(dtype),
        "steps": args.steps,
        "cases": cases,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
