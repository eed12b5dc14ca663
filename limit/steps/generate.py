"""generate step: responses of one model (a base model or the epoch `select` chose) to a judge prompt set.

For each seed of `generation.seeds`, one sampled response per prompt. Each seed is written atomically to
`seeds/seed-N.jsonl` and persisted, so a killed step resumes at the next seed. `responses.jsonl` holds them
all: {prompt_id, instruction, prompt, output, seed, model, checkpoint, prompt_tokens, output_tokens,
finish_reason, error}.
A failed generation (see `limit.generation.sampling`) is kept as a row with finish_reason "error"; more of
them than `generation.max_failure_rate` allows and the step ends retryable (exit 75) without completing,
and the next attempt samples only those again.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path

from limit.costs import PeakMemory
from limit.cpu import configure_torch_threads
from limit.data.chat import chat_prompt, end_of_turn, require_chat_template
from limit.data.prompts import Prompt, load_prompts
from limit.errors import LimitError, UnavailableError
from limit.execution import outputs, progress
from limit.execution.context import StepContext
from limit.execution.io import read_jsonl, write_jsonl
from limit.generation.sampling import make_sampler
from limit.models.base import load_tokenizer, model_location, tokenizer_location
from limit.spec.study import Generation
from limit.steps.inputs import GenerateInput


def generate(inp: GenerateInput, ctx: StepContext) -> dict:
    peak = PeakMemory.from_here()  # before the model loads: the same terms as the planner's estimate
    location, model_name, checkpoint = _model(inp, ctx)
    prompts = rendered(load_prompts(inp.prompts, cache_dir=ctx.workdir / "hf-datasets"), inp, location, ctx)
    gen = inp.generation
    if gen.backend == "hf":
        configure_torch_threads()
    print(f"generate: {len(prompts)} prompts x {len(gen.seeds)} seeds from {model_name}", file=sys.stderr)

    ctx.restore("seeds")  # seeds an earlier attempt finished
    seeds_dir = ctx.out / "seeds"
    seeds_dir.mkdir(parents=True, exist_ok=True)
    base = inp.model  # a hub base model may pin a revision; a finetuned checkpoint is a folder
    revision, trust = (base.revision, base.trust_remote_code) if base else (None, False)
    load_sampler = functools.cache(lambda: _sampler(inp, location, revision, trust))  # if needed

    rows: list[dict] = []
    for done, seed in enumerate(gen.seeds):
        where = {"seed": seed, "seeds_done": done, "seeds": len(gen.seeds), "prompts": len(prompts)}
        path = seeds_dir / f"seed-{seed}.jsonl"
        described = {"seed": seed, "model": model_name, "checkpoint": checkpoint}
        if _sample_seed(path, prompts, gen, described, load_sampler, where):
            ctx.persist("seeds")
        rows += read_jsonl(path)
    _check_failures(rows, gen.max_failure_rate)

    write_jsonl(rows, ctx.out / "responses.jsonl")
    finish = [r["finish_reason"] for r in rows]
    return {
        "prompts": len(prompts),
        "seeds": len(gen.seeds),
        "responses": len(rows),
        "mean_output_tokens": sum(r["output_tokens"] for r in rows) / len(rows),
        "mean_prompt_tokens": sum(r["prompt_tokens"] for r in rows) / len(rows),
        "stopped_at_eos": finish.count("eos"),
        "stopped_at_length": finish.count("length"),
        "prompts_too_long": finish.count("prompt_too_long"),
        "failed_generations": finish.count("error"),
        "memory_peak_gib": round(peak.peak_gib(), 4),
    }


def _sample_seed(
    path: Path, prompts: list[Prompt], gen: Generation, described: dict, load_sampler, where: dict
) -> bool:
    """Write `path`, one row per prompt, sampling what an earlier attempt did not leave (all of it, or the
    prompts that failed); False when there was nothing left to sample. `where`: the progress line's fields."""
    seed = described["seed"]
    earlier = read_jsonl(path) if path.is_file() else None
    if earlier is not None and len(earlier) != len(prompts):
        earlier = None
    redo = None if earlier is None else {i for i, r in enumerate(earlier) if r["finish_reason"] == "error"}
    if redo == set():
        print(f"generate: seed {seed} done by an earlier attempt, reusing it", file=sys.stderr)
        return False
    if redo:
        print(f"generate: seed {seed}: sampling again the {len(redo)} that failed", file=sys.stderr)
    progress.emit("generate", **where, prompts_done=0)
    on_batch = lambda n: progress.emit("generate", **where, prompts_done=n)  # noqa: E731
    samples = load_sampler().sample(prompts, gen, seed, only=redo, on_batch=on_batch)
    seed_rows = [
        earlier[i]
        if s is None
        else {"prompt_id": p.prompt_id, "instruction": p.instruction, "prompt": p.prompt}
        | {"output": s.output, **described, "prompt_tokens": s.prompt_tokens, "output_tokens": s.output_tokens}
        | {"finish_reason": s.finish_reason, "error": s.error}
        for i, (p, s) in enumerate(zip(prompts, samples, strict=True))
    ]
    write_jsonl(seed_rows, path)
    mean = sum(r["output_tokens"] for r in seed_rows) / len(seed_rows)
    print(f"generate: seed {seed}: {len(seed_rows)} responses, {mean:.1f} tokens on average", file=sys.stderr)
    return True


def rendered(prompts: list[Prompt], inp: GenerateInput, location: str, ctx: StepContext) -> list[Prompt]:
    """template chat: each prompt as the model's own chat template renders it, as its finetune trained on
    (the instruction the judge reads stays as it is); template paper: the prompts as loaded."""
    if inp.template != "chat":
        return prompts
    where = tokenizer_location(inp.model, ctx.workdir) if inp.model else location
    tokenizer = load_tokenizer(where, inp.model.revision if inp.model else None)
    require_chat_template(tokenizer, "generate")
    return [dataclasses.replace(p, prompt=chat_prompt(tokenizer, p.instruction)) for p in prompts]


def _sampler(inp: GenerateInput, location: str, revision: str | None, trust: bool):
    """The backend's sampler, stopping also where a chat template ends the assistant's turn."""
    sampler = make_sampler(inp.generation.backend, location, revision, trust)
    if inp.template == "chat":
        sampler.stop_ids += end_of_turn(sampler.tokenizer)
    return sampler


def _check_failures(rows: list[dict], max_rate: float) -> None:
    """A step whose failed generations are more than `max_rate` of its responses does not complete."""
    errors = [r for r in rows if r["finish_reason"] == "error"]
    if len(errors) > max_rate * len(rows):
        raise UnavailableError(
            f"generate: {len(errors)} of {len(rows)} generations failed, more than generation.max_failure_rate "
            f"({max_rate:g}); first: {errors[0]['error']}; the rest is kept: a rerun samples only those"
        )


def _model(inp: GenerateInput, ctx: StepContext) -> tuple[str, str, str | None]:
    """(location for from_pretrained, model name for the rows, checkpoint ref or None for a base model)."""
    if (inp.model is None) == (inp.selection is None):
        raise LimitError("step generate --input: give exactly one of model, selection")
    if inp.model is not None:
        location = model_location(inp.model, ctx.workdir)
        return location, inp.tags.get("run") or inp.model.hf or inp.model.path or "tiny", None
    choice = outputs.read(ctx.fetch(inp.selection) / "choice.json", outputs.Choice)
    finetune, sub = choice.finetune, choice.sub
    location = str(ctx.fetch(finetune, sub=sub))
    return location, inp.tags.get("run") or finetune, f"{finetune}/{sub}"
