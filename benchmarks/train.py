"""`make bench-train`: finetuning throughput on CPU, packed vs dynamic padding vs padding to max_seq_len.

The same rows, in the same micro-batches, through the same optimizer steps, in three modes measured in one
run on one machine:
- `padded_to_max`: every row padded to max_seq_len (the paper's setup), transformers' eager attention;
- `dynamic_padding`: each micro-batch padded to its longest row (the finetune before packing), eager;
- `packed`: each micro-batch's rows in one row, documents attended separately (`auto`: sdpa on CPU).
Rows come from length distributions matched to LIMA (~750 tokens mean) and dolly_hhrlhf (~170 mean, a long
tail), cut at max_seq_len. The model is an MPT shaped so that attention's share of the work is sizeable, as
in MPT-7B at these lengths (d_model 512, 2 layers, 8 heads; a small vocabulary so that the head does not
dominate). Real tokens/s counts the rows' tokens only; ratios compare modes within this run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np
import torch
from transformers import MptConfig, MptForCausalLM

from limit.cpu import configure_torch_threads
from limit.models.base import load_tokenizer, materialize_tiny
from limit.models.mpt.attention import install
from limit.spec.study import TinyModel, TrainSpec
from limit.training.trainer import collator

SHAPE = {"d_model": 512, "n_layers": 2, "n_heads": 8, "vocab_size": 2048}
MAX_SEQ_LEN = 2048
MICRO_BATCH = 6
# Log-normal (median, sigma): LIMA's rows are long and spread, dolly_hhrlhf's short with a long tail.
DATASETS = {"lima_like": (620, 0.6), "dolly_like": (105, 1.0)}  # means ~740 and ~170
MODES = {
    "padded_to_max": ({"packing": False, "pad_to_max": True}, "eager"),
    "dynamic_padding": ({"packing": False}, "eager"),
    "packed": ({"packing": True}, "auto"),
}
TARGETS = {"speedup_vs_padded_to_max": {"dolly_like": 5.0}, "speedup_vs_dynamic_padding": {"*": 1.5}}


def rows(name: str, count: int, seed: int) -> list[dict[str, list[int]]]:
    """`count` rows whose lengths are the distribution's quantiles (so a small sample keeps its mean), shuffled."""
    median, sigma = DATASETS[name]
    normal = NormalDist()
    quantiles = [median * math.exp(sigma * normal.inv_cdf((i + 0.5) / count)) for i in range(count)]
    lengths = np.clip(np.array(quantiles).astype(int), 16, MAX_SEQ_LEN)
    rng = np.random.default_rng(seed)
    rng.shuffle(lengths)
    out = []
    for n in lengths:
        ids = rng.integers(1, SHAPE["vocab_size"], int(n)).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ids})
    return out


def model(attention: str) -> MptForCausalLM:
    torch.manual_seed(0)
    config = MptConfig(**SHAPE, max_seq_len=MAX_SEQ_LEN)
    built = MptForCausalLM(config)
    return install(built, attention) if attention != "eager" else built


def train(mode: str, data: list[dict], steps: int, tokenizer) -> dict:
    """`steps` optimizer steps of one micro-batch each (plus one untimed warm-up), real tokens per second."""
    settings, attention = MODES[mode]
    spec = TrainSpec(max_seq_len=MAX_SEQ_LEN, micro_batch_size=MICRO_BATCH, global_batch_size=MICRO_BATCH, **settings)
    collate = collator(spec, tokenizer)
    net = model(attention).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    batches = [data[i * MICRO_BATCH : (i + 1) * MICRO_BATCH] for i in range(steps + 1)]
    seconds = 0.0
    for i, features in enumerate(batches):
        batch = collate([{k: list(v) for k, v in f.items()} for f in features])
        started = time.perf_counter()
        net(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i:  # the first step warms allocators and kernels up
            seconds += time.perf_counter() - started
    real = sum(len(f["input_ids"]) for features in batches[1:] for f in features)
    return {
        "attention": attention,
        "seconds": round(seconds, 3),
        "real_tokens": real,
        "real_tokens_per_s": round(real / seconds, 1),
    }


def measure(steps: int, tokenizer) -> dict:
    results = {}
    for seed, name in enumerate(DATASETS):
        data = rows(name, MICRO_BATCH * (steps + 1), seed)
        modes = {mode: train(mode, data, steps, tokenizer) for mode in MODES}
        packed = modes["packed"]["real_tokens_per_s"]
        results[name] = {
            "rows": len(data),
            "mean_tokens": round(float(np.mean([len(r["input_ids"]) for r in data])), 1),
            "modes": modes,
            "speedup_vs_padded_to_max": round(packed / modes["padded_to_max"]["real_tokens_per_s"], 2),
            "speedup_vs_dynamic_padding": round(packed / modes["dynamic_padding"]["real_tokens_per_s"], 2),
        }
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    return results


def targets_met(results: dict) -> dict[str, bool]:
    met = {}
    for ratio, per_dataset in TARGETS.items():
        for name in results:
            floor = per_dataset.get(name, per_dataset.get("*"))
            if floor is not None:
                met[f"{name}.{ratio}>={floor}"] = results[name][ratio] >= floor
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/bench/train.json")
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per mode and dataset")
    args = parser.parse_args()
    threads = configure_torch_threads()
    with tempfile.TemporaryDirectory(prefix="limit-bench-") as tmp:  # the padding collators pad with its token
        tokenizer = load_tokenizer(str(materialize_tiny(TinyModel(), Path(tmp))))
    results = measure(args.steps, tokenizer)
    report = {
        "benchmark": "train",
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch_threads": threads},
        "torch": torch.__version__,
        "model": {"architecture": "MptForCausalLM", **SHAPE, "max_seq_len": MAX_SEQ_LEN},
        "micro_batch_rows": MICRO_BATCH,
        "steps": args.steps,
        "datasets": results,
        "targets_met": targets_met(results),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}: {json.dumps(report['targets_met'])}")
    return 0 if all(report["targets_met"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
