"""Stage `gauntlet`: the packed, context-shared scorer against lm-eval's HFLM on the device, fp32 and bf16.

The model is the trainer stage's finetuned epoch where that stage ran (random weights score near-ties that
any rounding flips), else a tiny-built MPT of the same shape. The data are the shipped tiny gauntlet, or the
v0 files of `--gauntlet-data` (20 rows a benchmark). Per dtype: both scorers' time, the speedup, prediction
mismatches and the largest log-likelihood difference; fp32 must agree exactly (no mismatch, <= 1e-4).
"""

from __future__ import annotations

from limit.gpucheck.context import CheckContext

TOLERANCE = 1e-4


def run(ctx: CheckContext) -> dict:
    from limit.execution.locations import parse_locations
    from limit.gauntlet.benchmarks import suite
    from limit.gauntlet.data import fetch_files

    model = model_folder(ctx)
    benches = suite("v0" if ctx.gauntlet_data else "tiny")
    files = fetch_files(
        parse_locations(ctx.gauntlet_data or "fixture:gauntlet"), [b.file for b in benches], ctx.workdir
    )
    benches = [b for b in benches if b.file in files]
    limit = 20 if ctx.gauntlet_data else None
    result: dict = {"model": model, "benchmarks": len(benches), "limit": limit, "dtypes": {}}
    for dtype in ("float32", "bfloat16") if ctx.cuda else ("float32",):
        result["dtypes"][dtype] = versus_hflm(ctx, model, dtype, benches, files, limit)
        ctx.save(result)
    fp32 = result["dtypes"]["float32"]
    result["ok"] = fp32["prediction_mismatches"] == 0 and fp32["max_loglik_diff"] <= TOLERANCE
    result["headline"] = ", ".join(
        f"{dtype}: {r['speedup']:.2f}x HFLM, {r['prediction_mismatches']} mismatches, "
        f"max diff {r['max_loglik_diff']:.1e}"
        for dtype, r in result["dtypes"].items()
    )
    return result


def model_folder(ctx: CheckContext) -> str:
    trained = sorted((ctx.workdir.parent / "trainer" / "artifacts" / "finetune").glob("*/epoch-2"))
    if trained:
        return str(trained[-1])
    from limit.models.base import materialize_tiny
    from limit.spec.study import TinyModel

    shape = {} if ctx.smoke else {"d_model": 1024, "n_layers": 12, "n_heads": 16, "max_seq_len": 1024}
    return str(materialize_tiny(TinyModel(**shape), ctx.workdir))


def versus_hflm(ctx: CheckContext, model: str, dtype: str, benches, files, limit: int | None) -> dict:
    from lm_eval.models.huggingface import HFLM

    from limit.gauntlet.agreement import compare, timed_run
    from limit.gauntlet.evaluate import run_gauntlet
    from limit.gauntlet.packed import PackedLM
    from limit.spec.study import GauntletSpec

    hflm = HFLM(pretrained=model, batch_size=16, device=ctx.device, dtype=dtype)
    packed = PackedLM(hflm.model, tokenizer=hflm.tokenizer, batch_size=16)
    for lm in (hflm, packed):  # first-call costs (imports, compilation) paid before either is timed
        run_gauntlet(model, benches[:1], files, GauntletSpec(limit=2), lm=lm)
    folder = ctx.workdir / dtype
    spec = GauntletSpec(limit=limit)
    ours, ours_details = timed_run(packed, model, benches, files, spec, folder / "packed")
    theirs, theirs_details = timed_run(hflm, model, benches, files, spec, folder / "hflm")
    agreement = compare(ours_details, theirs_details)
    return {
        "packed_s": ours["loglikelihood_seconds"],
        "hflm_s": theirs["loglikelihood_seconds"],
        "speedup": round(theirs["loglikelihood_seconds"] / max(ours["loglikelihood_seconds"], 1e-9), 2),
        **agreement,
        "same_average": ours["average"] == theirs["average"],
    }
