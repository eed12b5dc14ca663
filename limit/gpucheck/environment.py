"""Stage `environment`: versions, the card, the packages the later stages need, and the project's attention
on this machine's own transformers (logits and cached generation equal stock MPT's, fp32)."""

from __future__ import annotations

import importlib.metadata
import platform

import torch

from limit.costs import GIB, card_peak_tflops
from limit.gpucheck import STAGES
from limit.gpucheck.context import CheckContext
from limit.gpucheck.models import random_mpt

TOLERANCE = 1e-4


def run(ctx: CheckContext) -> dict:
    result = {"versions": versions(), "card": card(ctx), "packages": packages()}
    result["missing_for"] = {
        stage.name: missing for stage in STAGES if (missing := [p for p in stage.needs if not result["packages"][p]])
    }
    result["attention"] = attention_on_this_transformers(ctx)
    result["ok"] = all(v["ok"] for v in result["attention"].values())
    ctx.save(result)
    card_name = result["card"].get("name", ctx.device)
    result["headline"] = f"{card_name}, torch {torch.__version__}, transformers {result['versions']['transformers']}"
    return result


def versions() -> dict:
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
    }


def card(ctx: CheckContext) -> dict:
    if not ctx.cuda:
        return {"name": "cpu", "cpus": torch.get_num_threads()}
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "memory_gib": round(props.total_memory / GIB, 2),
        "capability": f"{props.major}.{props.minor}",
        "count": torch.cuda.device_count(),
        "bf16": torch.cuda.is_bf16_supported(),
        "peak_bf16_tflops": card_peak_tflops(props.name),
    }


def packages() -> dict[str, str | None]:
    names = sorted({p for stage in STAGES for p in stage.needs})
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def attention_on_this_transformers(ctx: CheckContext) -> dict:
    from limit.models.mpt.attention import install

    stock = random_mpt(64, 4, 2, vocab=101, device=ctx.device).eval()
    ids = torch.randint(1, 101, (2, 19), device=ctx.device)
    settings = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        reference, generated = stock(input_ids=ids).logits, stock.generate(ids[:1], **settings)
    checks = {}
    for implementation in ["sdpa", "eager"] + (["flex"] if ctx.cuda else []):
        ours = install(random_mpt(64, 4, 2, vocab=101, device=ctx.device).eval(), implementation)
        ours.load_state_dict(stock.state_dict())
        with torch.no_grad():
            diff = float((ours(input_ids=ids).logits - reference).abs().max())
            same_generation = bool(torch.equal(ours.generate(ids[:1], **settings), generated))
        checks[implementation] = {"max_logit_diff": diff, "same_generation": same_generation}
        checks[implementation]["ok"] = diff < TOLERANCE and same_generation
    return checks
