"""A study spec becomes a plan: a DAG of steps, each with a typed input and a content-addressed key.

`Step.argv` is the single place a step's command line is made; the local backend runs it as a
subprocess and the Argo backend puts it in a pod, unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property

from limit import __version__
from limit.errors import LimitError
from limit.locations import local_file_sha256, local_path, local_tree_sha256
from limit.spec import ModelSpec, Resources, Study
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

# Bump a kind's number when its outputs change meaning: every key of that kind (and downstream) changes.
CODE_VERSIONS = {
    "prepare": 1,
    "finetune": 1,
    "gauntlet": 1,
    "select": 1,
    "generate": 1,
    "judge": 1,
    "report": 1,
}

DEFAULT_RESOURCES = {
    "prepare": Resources(cpu=1, memory="8Gi"),
    "finetune": Resources(cpu=1, memory="8Gi"),
    "gauntlet": Resources(cpu=1, memory="8Gi"),
    "select": Resources(cpu=0.5, memory="1Gi"),
    "generate": Resources(cpu=1, memory="8Gi"),
    "judge": Resources(cpu=1, memory="4Gi"),
    "report": Resources(cpu=0.5, memory="2Gi"),
}


def step_key(kind: str, inp: StepInput) -> str:
    """Hash of the kind, its code version and the input (tags excluded): equal work, equal key."""
    payload = {
        "kind": kind,
        "code": f"{__version__}/{CODE_VERSIONS[kind]}",
        "input": inp.model_dump(mode="json", exclude={"tags"}),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def step_argv(kind: str, inp: StepInput) -> list[str]:
    """The command line that runs one step, locally and in a pod alike.

    The input is written in full (every hyperparameter visible, no reliance on the pod's defaults) and the
    key rides along, so a pod whose code would file the output under another key refuses to run.
    """
    return ["limit", "step", kind, "--key", step_key(kind, inp), "--input", inp.model_dump_json()]


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


@dataclass
class Plan:
    study: Study
    steps: dict[str, Step] = field(default_factory=dict)

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


def slug(name: str) -> str:
    """A name safe for DAG task names and Kubernetes labels."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("+", "-plus-")).strip("-")


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
    parts = [p.strip() for p in spec.data.split(",")]
    if not study.runs or any(p.startswith("s3://") or "@" in p for p in parts):
        return
    missing = [b.name for b in benchmarks if not any((local_path(p) / b.file).is_file() for p in parts)]
    if missing:
        raise LimitError(
            f"{origin}: gauntlet.data: {len(missing)} of the suite's {len(benchmarks)} files are not in "
            f"{spec.data} ({', '.join(missing)}): no epoch could get a complete average; add them "
            "(limit gauntlet-convert) or use llm-foundry@be467aee1"
        )


def build_plan(study: Study, origin: str = "study") -> Plan:
    """`origin` names the spec file in error messages."""
    plan = Plan(study)
    _check_gauntlet_data(study, origin)

    def resources(kind: str, gpus: int | None = None) -> Resources:
        res = study.resources.get(kind, DEFAULT_RESOURCES[kind])
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

    gauntlet_data_sha = local_tree_sha256(study.gauntlet.data)

    def gauntlet(step_id: str, deps: tuple[str, ...], tags: dict[str, str], **where) -> Step:
        inp = GauntletInput(gauntlet=study.gauntlet, data_sha256=gauntlet_data_sha, tags=tags, **where)
        return plan.add(Step(step_id, "gauntlet", inp, deps, resources("gauntlet")))

    report_models: list[ReportModel] = []
    chosen: dict[str, tuple[Step | None, ModelSpec | None]] = {}

    for run in study.runs:
        name = run.run_name
        train = study.train_spec(run)
        data = prepare(run.dataset)
        tags = {"run": name, "model": run.model, "dataset": run.dataset}
        ft = plan.add(
            Step(
                f"finetune-{slug(name)}",
                "finetune",
                FinetuneInput(model=study.models[run.model], data=data.ref, train=train, tags=tags),
                (data.id,),
                resources("finetune", gpus=train.gpus),
            )
        )
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
