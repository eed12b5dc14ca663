"""The memory and cost planner's part in a plan: each finetune's ZeRO stage, estimates, refusal and disk; the
batches of gauntlet and generate steps on a GPU."""

from __future__ import annotations

from dataclasses import replace

from limit.costs import (
    Gpu,
    Shape,
    choose_zero_stage,
    finetune_disk,
    finetune_flops,
    finetune_memory,
    generation_hours,
    generation_memory,
    gpu_hours,
    model_shape,
    scoring_flops,
    scoring_memory,
)
from limit.data.prompts import count_prompts, prompt_tokens
from limit.errors import LimitError
from limit.gauntlet.benchmarks import suite
from limit.gauntlet.volume import volume
from limit.plan.dag import FinetuneCost, InferenceCost
from limit.quantities import gibibytes, parse_quantity
from limit.spec.study import (
    GauntletSpec,
    Generation,
    LoraSpec,
    ModelSpec,
    PromptSet,
    Resources,
    RunSpec,
    Study,
    TrainSpec,
)
from limit.steps import KINDS


def expected_tokens(study: Study, name: str) -> tuple[float, float] | None:
    """(rows, mean tokens per row) the spec expects of a dataset before it is prepared, or None."""
    ds = study.datasets[name]
    if ds.source is not None:
        return (ds.source.expect.rows, ds.source.expect.tokens_mean) if ds.source.expect else None
    if ds.subset is not None:
        parent = expected_tokens(study, ds.subset.of)
        return (ds.subset.sample, parent[1]) if parent else None
    members = [expected_tokens(study, m) for m in ds.mix]
    if any(m is None for m in members):
        return None
    rows = sum(r for r, _ in members)
    return rows, sum(r * mean for r, mean in members) / rows


def _advice(shape: Shape, train: TrainSpec, gpu: Gpu) -> str:
    """The first field whose change (in this order of cost) brings the estimate under the GPU's memory."""
    candidates = [
        ("attention", {"attention": "flex"}),
        ("gradient_checkpointing", {"gradient_checkpointing": True}),
        ("micro_batch_size", {"micro_batch_size": 1}),
        ("zero_stage", {"zero_stage": 3}),
    ]
    for field_name, change in candidates:
        if all(getattr(train, k) == v for k, v in change.items()):
            continue
        changed = train.model_copy(update=change)
        if finetune_memory(shape, changed, changed.zero_stage, train.max_seq_len).gib <= gpu.memory_gib:
            return field_name
    return "gpus"


def written_index(study: Study, index: int) -> int:
    """The spec's own index of the `index`th expanded run (a sweep or seed list makes several of one)."""
    written = study.origin(study.runs[index]).written
    return index if written is None else written


def plan_finetune(study: Study, index: int, gpu: Gpu, origin: str) -> tuple[TrainSpec, FinetuneCost]:
    """A run's training spec with its ZeRO stage chosen, and its estimates; refuses what cannot fit."""
    run: RunSpec = study.runs[index]
    train = study.train_spec(run)
    shape = model_shape(study.models[run.model], f"models.{run.model}")
    written = train
    train = with_zero_stage(shape, train, gpu)
    if shape is None:
        return train, FinetuneCost(None, None, None, None)
    if train.attention == "flash" and shape.family == "mpt":
        raise LimitError(
            f"{origin}: runs.{written_index(study, index)} ({run.run_name}): attention flash is for the RoPE "
            f"families; {run.model} is an MPT: use attention auto, flex or sdpa"
        )
    stage = train.zero_stage if train.gpus else 0
    memory, hours, tokens = estimate(shape, train, expected_tokens(study, run.dataset), gpu)
    if train.gpus and memory.gib > gpu.memory_gib:
        field, index = _advice(shape, train, gpu), written_index(study, index)
        raise LimitError(
            f"{origin}: runs.{index} ({run.run_name}): the finetune needs ~{memory.gib:.0f} GiB per GPU "
            f"({train.micro_batch_size} x {train.max_seq_len} tokens, ZeRO-{stage}, {train.attention} attention: "
            f"{memory.describe()}), over the {gpu.memory_gib:g} GiB per GPU the cluster declares "
            f"(profile gpu_memory_gib): change {field} (runs.{index}.train.{field} or training.models.{run.model})"
        )
    disk = finetune_disk(shape, train)
    cost = FinetuneCost(memory, hours, tokens, gpu.memory_gib if train.gpus else None, disk)
    cost.methods.update(method_costs(shape, written, expected_tokens(study, run.dataset), gpu))
    return train, cost


def with_zero_stage(shape: Shape | None, train: TrainSpec, gpu: Gpu) -> TrainSpec:
    """`train` with an "auto" ZeRO stage chosen: the one that fits on GPUs, 2 for CPU processes."""
    if train.gpus and train.zero_stage == "auto":
        return train.model_copy(update={"zero_stage": choose_zero_stage(shape, train, gpu) if shape else 3})
    if train.cpu_processes and train.zero_stage == "auto":  # no GPU memory to fit: the stage GPUs prefer
        return train.model_copy(update={"zero_stage": 2})
    return train


def estimate(shape: Shape, train: TrainSpec, expected: tuple[float, float] | None, gpu: Gpu):
    """(peak memory per device, GPU-hours or None, real tokens per epoch or None) of a finetune."""
    stage = train.zero_stage if train.gpus else 0
    memory = finetune_memory(shape, train, stage, train.max_seq_len, "cuda" if train.gpus else "cpu")
    tokens = min(expected[1], train.max_seq_len) * expected[0] if expected else None
    hours = None
    if tokens and train.gpus:
        mean_row = min(expected[1], train.max_seq_len)
        hours = gpu_hours(train.epochs * finetune_flops(shape, tokens, mean_row, train.lora), gpu)
    return memory, hours, tokens


def method_costs(shape: Shape, written: TrainSpec, expected, gpu: Gpu) -> dict[str, tuple[float, float | None]]:
    """The same finetune trained full and with LoRA (its own adapters, else the defaults): GiB per device and
    GPU-hours of each, for the plan summary to show side by side."""
    both = {  # a consistent method and lora need no validation again (the spec is resolved once per run)
        "full": written.model_copy(update={"method": "full", "lora": None}),
        "lora": written.model_copy(update={"method": "lora", "lora": written.lora or LoraSpec()}),
    }
    out = {}
    for method, spec in both.items():
        train = with_zero_stage(shape, spec, gpu)
        memory, hours, _ = estimate(shape, train, expected, gpu)
        out[method] = (memory.gib, hours)
    return out


def finetune_resources(study: Study, index: int, train: TrainSpec, cost: FinetuneCost, origin: str) -> Resources:
    """The study's finetune resources with the run's GPUs, and a disk sized from the planner's estimate
    (or the study's own size, refused when smaller than the estimate)."""
    res = study.resources.get("finetune", KINDS["finetune"].resources).model_copy(update={"gpus": train.gpus})
    if cost.disk is None:
        return res
    if res.disk is None:
        return res.model_copy(update={"disk": gibibytes(cost.disk.gib)})
    if parse_quantity(res.disk) < cost.disk.total:
        raise LimitError(
            f"{origin}: resources.finetune.disk: {res.disk} is less than the ~{cost.disk.gib:.0f} GiB that "
            f"runs.{written_index(study, index)} ({study.runs[index].run_name}) keeps on disk "
            f"({cost.disk.describe()}); remove it to size each finetune from the estimate"
        )
    return res


def plan_gauntlet(spec: GauntletSpec, model: ModelSpec, gpu: Gpu, where: str) -> GauntletSpec:
    """The gauntlet as asked where it fits one GPU. Otherwise `packed` without `batch_tokens` gets rows of
    as many max-length documents as fit, `hf` a smaller batch_size (neither changes a score); an explicit
    `batch_tokens` that does not fit, or one document that does not, is refused."""
    shape = model_shape(model)
    if shape is None or spec.backend == "vllm":
        return spec
    if spec.max_length:  # documents are left-truncated to it
        shape = replace(shape, max_seq_len=min(shape.max_seq_len, spec.max_length))

    def gib(batch_size: int, batch_tokens: int | None) -> float:
        return scoring_memory(shape, spec.backend, batch_size, batch_tokens, spec.attention).gib

    if gib(spec.batch_size, spec.batch_tokens) <= gpu.memory_gib:
        return spec
    length, packed = shape.max_seq_len, spec.backend == "packed"
    explicit = packed and spec.batch_tokens is not None
    if packed:
        rows = max((n for n in range(1, spec.batch_size) if gib(1, n * length) <= gpu.memory_gib), default=0)
        update, asked = {"batch_tokens": rows * length}, (1, spec.batch_tokens or length)
    else:
        rows = max((n for n in range(1, spec.batch_size) if gib(n, None) <= gpu.memory_gib), default=0)
        update, asked = {"batch_size": rows}, (1, None)
    if explicit or not rows:
        memory = scoring_memory(shape, spec.backend, *asked, spec.attention)
        raise LimitError(
            f"{where}: gauntlet.{'batch_tokens' if packed else 'batch_size'}: scoring needs ~{memory.gib:.0f} GiB "
            f"({memory.describe()}), over the {gpu.memory_gib:g} GiB GPU (profile gpu_memory_gib): "
            + ("lower gauntlet.batch_tokens, or use attention flex" if packed else "use backend packed")
        )
    return spec.model_copy(update=update)


def plan_generation(gen: Generation, model: ModelSpec, gpu: Gpu, where: str) -> Generation:
    """Generation as asked where its batch fits one GPU, else the largest batch_size that does (vLLM sizes
    its own); refused with one line when one row does not fit."""
    shape = model_shape(model)
    if shape is None or gen.backend == "vllm":
        return gen
    if generation_memory(shape, gen.batch_size, gen.max_total_tokens).gib <= gpu.memory_gib:
        return gen
    fits = [
        n for n in range(1, gen.batch_size) if generation_memory(shape, n, gen.max_total_tokens).gib <= gpu.memory_gib
    ]
    if not fits:
        memory = generation_memory(shape, 1, gen.max_total_tokens)
        raise LimitError(
            f"{where}: generation.max_total_tokens: one row of {gen.max_total_tokens} tokens needs "
            f"~{memory.gib:.0f} GiB ({memory.describe()}), over the {gpu.memory_gib:g} GiB GPU (profile "
            "gpu_memory_gib): lower generation.max_total_tokens, or use backend vllm"
        )
    return gen.model_copy(update={"batch_size": max(fits)})


def gauntlet_cost(spec: GauntletSpec, model: ModelSpec, gpu: Gpu) -> InferenceCost:
    """GPU-hours of one model on the gauntlet as planned (its `limit` rows of each benchmark, documents cut to
    the scored maximum), from each benchmark's forwarded tokens (limit/gauntlet/volume.py)."""
    shape = model_shape(model)
    if shape is None:
        return InferenceCost(None, None, unknown="model shape unknown")
    longest = min(shape.max_seq_len, spec.max_length or shape.max_seq_len)
    volumes = {b.name: volume(b, spec.locations, spec.seed) for b in suite(spec.suite, spec.tasks)}
    missing = [name for name, v in volumes.items() if v is None]
    if missing:
        return InferenceCost(None, None, unknown=f"no files or counts for {', '.join(missing)}")
    tokens = sum(v.scored_tokens(longest, spec.limit) for v in volumes.values())
    documents = sum(v.documents * v.share(spec.limit) for v in volumes.values())
    hours = gpu_hours(scoring_flops(shape, tokens, tokens / documents), gpu)
    estimated = tuple(name for name, v in volumes.items() if not v.measured)
    return InferenceCost(hours, tokens, estimated=estimated)


def generation_cost(gen: Generation, prompts: PromptSet, model: ModelSpec, gpu: Gpu) -> InferenceCost:
    """GPU-hours of sampling every seed's responses to a prompt set (`costs.generation_hours`): each response
    planned at its most new tokens, as a batch decodes until its longest row ends."""
    shape = model_shape(model)
    rows, prompt = count_prompts(prompts), prompt_tokens(prompts)
    if shape is None or rows is None or prompt is None:
        why = "a prompt set of unknown size (give it expect: rows, tokens_mean)"
        why = "model shape unknown" if shape is None else why
        return InferenceCost(None, None, unknown=why)
    prompt = min(prompt, gen.max_total_tokens - 1)
    new = min(gen.max_new_tokens or gen.max_total_tokens, gen.max_total_tokens - prompt)
    seeds = len(gen.seeds)
    hours = seeds * generation_hours(shape, gpu, rows, gen.batch_size, prompt, new)
    return InferenceCost(hours, seeds * rows * (prompt + new))
