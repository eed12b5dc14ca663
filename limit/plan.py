"""A study spec becomes a plan: a DAG of steps, each with a typed input and a content-addressed key.

`Step.argv` is the single place a step's command line is made; the local backend runs it as a
subprocess and the Argo backend puts it in a pod, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from limit.costs import (
    Gpu,
    Memory,
    choose_zero_stage,
    finetune_disk,
    finetune_flops,
    finetune_memory,
    gpu_hours,
    model_shape,
)
from limit.errors import LimitError
from limit.locations import local_file_sha256, local_path, local_tree_sha256
from limit.quantities import gibibytes, parse_quantity
from limit.spec import ModelSpec, Resources, RunSpec, Study, TrainSpec, slug
from limit.steps import KINDS, step_argv, step_key
from limit.steps.inputs import (
    EpochScore,
    FinetuneInput,
    GauntletInput,
    GenerateInput,
    JudgeInput,
    PrepareInput,
    ReportInput,
    ReportModel,
    ReportPair,
    SelectInput,
    StepInput,
    SubsetOf,
)


@dataclass(frozen=True)
class Step:
    id: str
    kind: str
    input: StepInput
    deps: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)

    @cached_property
    def key(self) -> str:
        return step_key(self.kind, self.input)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.key}"

    @property
    def argv(self) -> list[str]:
        return step_argv(self.kind, self.input)


@dataclass(frozen=True)
class FinetuneCost:
    """The planner's estimates for one finetune (None where the model's shape or the data size is unknown)."""

    memory: Memory | None
    gpu_hours: float | None
    tokens: float | None  # real tokens per epoch, expected
    budget_gib: float | None  # the GPU memory it was checked against (None on CPU)
    disk: Memory | None = None  # the pod's local disk at its peak


@dataclass
class Plan:
    study: Study
    steps: dict[str, Step] = field(default_factory=dict)
    costs: dict[str, FinetuneCost] = field(default_factory=dict)
    gpu: Gpu = field(default_factory=Gpu)

    def add(self, step: Step) -> Step:
        existing = self.steps.get(step.id)
        if existing is not None:
            if existing.key != step.key:
                raise LimitError(f"plan: two different steps named '{step.id}'")
            return existing
        self.steps[step.id] = step
        return step

    def order(self) -> list[Step]:
        """Steps in insertion order, which `build_plan` keeps topological."""
        return list(self.steps.values())

    def by_kind(self, kind: str) -> list[Step]:
        return [s for s in self.steps.values() if s.kind == kind]

    def to_json(self) -> dict:
        return {
            "study": self.study.name,
            "costs": {step_id: _cost_json(cost) for step_id, cost in self.costs.items()},
            "steps": [
                {
                    "id": s.id,
                    "kind": s.kind,
                    "key": s.key,
                    "deps": list(s.deps),
                    "resources": s.resources.model_dump(),
                    "argv": s.argv,
                }
                for s in self.order()
            ],
        }


def _cost_json(cost: FinetuneCost) -> dict:
    return {
        "memory_gib": round(cost.memory.gib, 2) if cost.memory else None,
        "memory_terms_gib": {k: round(v / 2**30, 3) for k, v in cost.memory.terms.items()} if cost.memory else None,
        "budget_gib": cost.budget_gib,
        "gpu_hours": round(cost.gpu_hours, 3) if cost.gpu_hours is not None else None,
        "tokens_per_epoch": cost.tokens,
        "disk_gib": round(cost.disk.gib, 1) if cost.disk else None,
    }


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


def _advice(shape, train: TrainSpec, gpu: Gpu) -> str:
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


def plan_finetune(study: Study, index: int, gpu: Gpu, origin: str) -> tuple[TrainSpec, FinetuneCost]:
    """A run's training spec with its ZeRO stage chosen, and its estimates; refuses what cannot fit."""
    run: RunSpec = study.runs[index]
    train = study.train_spec(run)
    shape = model_shape(study.models[run.model])
    if train.gpus and train.zero_stage == "auto":
        train = train.model_copy(update={"zero_stage": choose_zero_stage(shape, train, gpu) if shape else 3})
    if shape is None:
        return train, FinetuneCost(None, None, None, None)
    stage = train.zero_stage if train.gpus else 0
    memory = finetune_memory(shape, train, stage, train.max_seq_len, "cuda" if train.gpus else "cpu")
    if train.gpus and memory.gib > gpu.memory_gib:
        field = _advice(shape, train, gpu)
        raise LimitError(
            f"{origin}: runs.{index} ({run.run_name}): the finetune needs ~{memory.gib:.0f} GiB per GPU "
            f"({train.micro_batch_size} x {train.max_seq_len} tokens, ZeRO-{stage}, {train.attention} attention: "
            f"{memory.describe()}), over the {gpu.memory_gib:g} GiB per GPU the cluster declares "
            f"(profile gpu_memory_gib): change {field} (runs.{index}.train.{field} or training.models.{run.model})"
        )
    expected = expected_tokens(study, run.dataset)
    tokens = min(expected[1], train.max_seq_len) * expected[0] if expected else None
    hours = None
    if tokens and train.gpus:
        hours = gpu_hours(train.epochs * finetune_flops(shape, tokens, min(expected[1], train.max_seq_len)), gpu)
    disk = finetune_disk(shape, train)
    return train, FinetuneCost(memory, hours, tokens, gpu.memory_gib if train.gpus else None, disk)


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
            f"runs.{index} ({study.runs[index].run_name}) keeps on disk ({cost.disk.describe()}); remove it to "
            "size each finetune from the estimate"
        )
    return res


def _check_subset_size(study: Study, name: str, origin: str) -> None:
    """Fail at plan time when a subset asks for more rows than a local source file has lines."""
    subset = study.datasets[name].subset
    source = study.datasets[subset.of].source
    if source is None or source.jsonl is None:
        return  # hub sources are checked by the prepare step, which knows the row count
    path = local_path(source.jsonl)
    rows = sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else None
    if rows is not None and subset.sample > rows:
        raise LimitError(
            f"{origin}: datasets.{name}.subset.sample: {subset.sample} rows asked of '{subset.of}', "
            f"which has {rows} ({source.jsonl})"
        )


def _check_gauntlet_data(study: Study, origin: str) -> None:
    """Fail at plan time when local gauntlet data lacks some of the suite's files.

    Every average would be incomplete, so `select` could not choose an epoch: better said before the
    finetunes than after. Remote locations (s3://, llm-foundry@) are checked by the gauntlet step.
    """
    from limit.gauntlet.benchmarks import suite

    spec = study.gauntlet
    try:
        benchmarks = suite(spec.suite, spec.tasks)
    except LimitError as e:
        raise LimitError(f"{origin}: {e}") from None
    locations = spec.locations
    if not study.runs or not all(location.local for location in locations):
        return
    missing = [b.name for b in benchmarks if not any((loc.path / b.file).is_file() for loc in locations)]
    if missing:
        raise LimitError(
            f"{origin}: gauntlet.data: {len(missing)} of the suite's {len(benchmarks)} files are not in "
            f"{spec.data} ({', '.join(missing)}): no epoch could get a complete average; add them "
            "(limit gauntlet-convert) or use llm-foundry@be467aee1744566e46e9b993c1ff23ab01fe5c55"
        )


def build_plan(study: Study, origin: str = "study", gpu: Gpu | None = None) -> Plan:
    """`origin` names the spec file in error messages; `gpu` is the cluster's GPU (default: an 80 GB H100)."""
    plan = Plan(study, gpu=gpu or Gpu())
    _check_gauntlet_data(study, origin)

    def resources(kind: str, gpus: int | None = None) -> Resources:
        res = study.resources.get(kind, KINDS[kind].resources)
        return res.model_copy(update={"gpus": gpus}) if gpus is not None else res

    stats_model = study.models[study.stats_tokenizer or next(iter(study.models))]

    def prepare(name: str) -> Step:
        ds = study.datasets[name]
        deps: tuple[str, ...] = ()
        if ds.source:
            sha = None
            if ds.source.jsonl:
                sha = local_file_sha256(ds.source.jsonl, f"{origin}: datasets.{name}.source.jsonl")
            inp = PrepareInput(source=ds.source, source_sha256=sha, stats_tokenizer=stats_model)
        elif ds.subset:
            _check_subset_size(study, name, origin)
            parent = prepare(ds.subset.of)
            deps = (parent.id,)
            inp = PrepareInput(
                subset=SubsetOf(of=parent.ref, sample=ds.subset.sample, seed=ds.subset.seed),
                stats_tokenizer=stats_model,
            )
        else:
            members = [prepare(m) for m in ds.mix]
            deps = tuple(m.id for m in members)
            inp = PrepareInput(mix=[m.ref for m in members], stats_tokenizer=stats_model)
        inp = inp.model_copy(update={"tags": {"dataset": name}})
        return plan.add(Step(f"prepare-{slug(name)}", "prepare", inp, deps, resources("prepare")))

    gauntlet_data_sha = local_tree_sha256(study.gauntlet.locations)

    def gauntlet(step_id: str, deps: tuple[str, ...], tags: dict[str, str], **where) -> Step:
        inp = GauntletInput(gauntlet=study.gauntlet, data_sha256=gauntlet_data_sha, tags=tags, **where)
        return plan.add(Step(step_id, "gauntlet", inp, deps, resources("gauntlet")))

    report_models: list[ReportModel] = []
    chosen: dict[str, tuple[Step | None, ModelSpec | None]] = {}

    for index, run in enumerate(study.runs):
        name = run.run_name
        train, cost = plan_finetune(study, index, plan.gpu, origin)
        data = prepare(run.dataset)
        tags = {"run": name, "model": run.model, "dataset": run.dataset}
        ft = plan.add(
            Step(
                f"finetune-{slug(name)}",
                "finetune",
                FinetuneInput(model=study.models[run.model], data=data.ref, train=train, tags=tags),
                (data.id,),
                finetune_resources(study, index, train, cost, origin),
            )
        )
        plan.costs[ft.id] = cost
        epochs = []
        for epoch in range(1, train.epochs + 1):
            g = gauntlet(
                f"gauntlet-{slug(name)}-e{epoch}",
                (ft.id,),
                {**tags, "epoch": str(epoch)},
                finetune=ft.ref,
                epoch=epoch,
            )
            epochs.append((epoch, g))
        sel = plan.add(
            Step(
                f"select-{slug(name)}",
                "select",
                SelectInput(
                    finetune=ft.ref,
                    epochs=[EpochScore(epoch=e, gauntlet=g.ref) for e, g in epochs],
                    keep=train.keep,
                    tags=tags,
                ),
                (ft.id, *(g.id for _, g in epochs)),
                resources("select"),
            )
        )
        chosen[name] = (sel, None)
        report_models.append(
            ReportModel(name=name, kind="run", model=run.model, dataset=run.dataset, selection=sel.ref)
        )

    for base in study.baselines:
        g = gauntlet(f"gauntlet-{slug(base)}", (), {"run": base, "model": base}, model=study.models[base])
        chosen[base] = (None, study.models[base])
        report_models.append(ReportModel(name=base, kind="baseline", model=base, gauntlet=g.ref))

    generated: dict[tuple[str, str], Step] = {}

    def generate(model_name: str, prompts: str) -> Step:
        if (model_name, prompts) in generated:
            return generated[(model_name, prompts)]
        sel, base = chosen[model_name]
        prompt_set = study.prompts[prompts]
        sha = None
        if prompt_set.jsonl or prompt_set.release_txt:
            sha = local_file_sha256(
                prompt_set.jsonl or prompt_set.release_txt,
                f"{origin}: prompts.{prompts}.{'jsonl' if prompt_set.jsonl else 'release_txt'}",
            )
        inp = GenerateInput(
            model=base,
            selection=sel.ref if sel else None,
            prompts=prompt_set,
            prompts_sha256=sha,
            generation=study.generation,
            tags={"run": model_name, "prompts": prompts},
        )
        step = plan.add(
            Step(
                f"generate-{slug(model_name)}-{slug(prompts)}",
                "generate",
                inp,
                (sel.id,) if sel else (),
                resources("generate"),
            )
        )
        generated[(model_name, prompts)] = step
        return step

    report_pairs: list[ReportPair] = []
    judge_model = study.models[study.judge.local_model] if study.judge.backend == "local" else None
    for pair in study.pairs:
        a, b = generate(pair.a, pair.prompts), generate(pair.b, pair.prompts)
        j = plan.add(
            Step(
                f"judge-{slug(pair.a)}-vs-{slug(pair.b)}-{slug(pair.prompts)}",
                "judge",
                JudgeInput(
                    a=a.ref,
                    b=b.ref,
                    judge=study.judge,
                    judge_model=judge_model,
                    tags={"a": pair.a, "b": pair.b, "prompts": pair.prompts},
                ),
                (a.id, b.id),
                resources("judge"),
            )
        )
        report_pairs.append(ReportPair(a=pair.a, b=pair.b, prompts=pair.prompts, judge=j.ref))

    report_deps = tuple(
        s.id for s in plan.order() if s.kind in ("select", "judge") or (s.kind == "gauntlet" and s.input.model)
    )
    plan.add(
        Step(
            "report",
            "report",
            ReportInput(study=study.name, models=report_models, pairs=report_pairs, tags={"study": study.name}),
            report_deps,
            resources("report"),
        )
    )
    return plan
