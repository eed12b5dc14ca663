"""Stage `exactness`: in fp32 on the device, the document attention's implementations against each other and
against stock MPT, on packed rows of documents of several lengths (heads of 64 dimensions; 16 in smoke):

- each document's logits in the packed row vs that document alone through stock MPT (every implementation);
- gradients of the packed row's loss: sdpa and flex vs eager (the reference), flex also under reentrant
  activation checkpointing (as the finetune runs it);
- the gauntlet's branched layout: a context scored with two continuations vs each continuation alone.
On CPU flex runs forward only (torch has no CPU backward for it).
"""

from __future__ import annotations

import copy

import torch

from limit.gpucheck.context import CheckContext
from limit.gpucheck.models import enable_checkpointing, random_mpt
from limit.models.mpt.attention import Layout, install

TOLERANCE = 1e-4


def run(ctx: CheckContext) -> dict:
    d_model, lengths = (64, (7, 23, 13)) if ctx.smoke else (256, (37, 200, 513, 90))
    stock = random_mpt(d_model, 4, 2, vocab=1000, device=ctx.device).float().eval()
    generator = torch.Generator().manual_seed(1)
    docs = [torch.randint(1, 1000, (n,), generator=generator).to(ctx.device) for n in lengths]
    implementations = ["eager", "sdpa", "flex"]
    result: dict = {"lengths": lengths, "d_model": d_model, "per_document": {}, "gradients": {}, "branches": {}}
    for implementation in implementations:
        result["per_document"][implementation] = per_document(stock, implementation, docs)
        result["branches"][implementation] = branches(stock, implementation, docs)
        ctx.save(result)
    trains = ["eager", "sdpa"] + (["flex", "flex+checkpointing"] if ctx.cuda else [])
    reference = None
    for name in trains:
        grads = gradients(stock, name, docs)
        reference = reference or grads
        result["gradients"][name] = max_relative(grads, reference)
        ctx.save(result)
    worst = [*result["per_document"].values(), *result["branches"].values(), *result["gradients"].values()]
    result["ok"] = max(worst) < TOLERANCE
    result["headline"] = f"largest difference {max(worst):.1e} over {', '.join(trains)} (tolerance {TOLERANCE:g})"
    return result


def packed(docs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    positions = torch.cat([torch.arange(len(d), device=d.device) for d in docs])
    return {"input_ids": torch.cat(docs)[None], "position_ids": positions[None]}


def per_document(stock, implementation: str, docs: list[torch.Tensor]) -> float:
    model = install(copy.deepcopy(stock), implementation)
    with torch.no_grad():
        logits = model(**packed(docs)).logits[0]
        parts = torch.split(logits, [len(d) for d in docs])
        return max(
            float((part - stock(input_ids=d[None]).logits[0]).abs().max()) for part, d in zip(parts, docs, strict=True)
        )


def branches(stock, implementation: str, docs: list[torch.Tensor]) -> float:
    """docs[0] as a context, docs[1] and docs[2] as its two continuations, in one row."""
    context, first, second = docs[0], docs[1][:9], docs[2][:6]
    n, a, b = len(context), len(first), len(second)
    device = context.device
    ids = torch.cat([context, first, second])[None]
    pos = torch.cat([torch.arange(n), torch.arange(n, n + a), torch.arange(n, n + b)])[None].to(device)
    branch = torch.tensor([0] * n + [1] * a + [2] * b, device=device)[None]
    layout = Layout(torch.ones_like(ids), pos, queries=n + a + b, branch=branch, contiguous=False)
    if implementation == "eager":
        return 0.0  # eager takes contiguous positions only
    model = install(copy.deepcopy(stock), implementation)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=layout).logits[0]
        worst = 0.0
        for continuation, where in ((first, slice(n, n + a)), (second, slice(n + a, n + a + b))):
            alone = stock(input_ids=torch.cat([context, continuation])[None]).logits[0]
            worst = max(worst, float((logits[where] - alone[n:]).abs().max()))
        return worst


def gradients(stock, name: str, docs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    implementation = name.split("+")[0]
    model = install(copy.deepcopy(stock), implementation).train()
    if name.endswith("+checkpointing"):
        enable_checkpointing(model)
    labels = torch.cat([torch.cat([d.new_full((1,), -100), d[1:]]) for d in docs])[None]
    model(**packed(docs), labels=labels).loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def max_relative(grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    return max(float((grads[n] - g).abs().max() / g.abs().max().clamp_min(1e-12)) for n, g in reference.items())
