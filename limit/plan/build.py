"""How a study becomes a plan, piece by piece: datasets are prepared; each run is finetuned, every checkpoint
scored on the gauntlet and the best epoch selected; baselines are scored; each judged pair generates
responses from both models and judges them; a report reads it all."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from limit.costs import Gpu
from limit.errors import LimitError
from limit.execution.locations import local_file_sha256, local_path, local_tree_sha256
from limit.plan.checks import check_gauntlet_data, check_models, check_subset_size
from limit.plan.dag import Plan, Step
from limit.plan.sizing import (
    finetune_resources,
    gauntlet_cost,
    generation_cost,
    plan_finetune,
    plan_gauntlet,
    plan_generation,
)
from limit.spec.study import ModelSpec, Pair, Resources, RunSpec, Study, dataset_rows, slug
from limit.steps import KINDS
from limit.steps.inputs import (
    CalibrateInput,
    ContaminationInput,
    Decontaminate,
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

MAX_STEPS = 10_000  # a larger plan is refused unless asked for (`--max-steps`): it is most likely a typo


def build_plan(study: Study, origin: str = "study", gpu: Gpu | None = None, max_steps: int = MAX_STEPS) -> Plan:
    """`origin` names the spec file in error messages; `gpu` is the cluster's GPU (default: an 80 GB H100)."""
    steps = step_count(study)
    if steps > max_steps:
        raise LimitError(
            f"{origin}: the study plans up to {steps:,} steps, more than {max_steps:,} (runs x checkpoints: "
            f"training epochs / checkpoint_every): check them, or pass --max-steps {steps} if that is meant"
        )
    check_gauntlet_data(study, origin)
    check_models(study, origin)
    planner = Planner(study, origin, gpu or Gpu())
    for index in range(len(study.runs)):
        planner.run(index)
    for name in study.baselines:
        planner.baseline(name)
    for pair in study.pairs:
        planner.pair(pair)
    planner.calibrate()
    planner.report()
    return planner.plan


def step_count(study: Study) -> int:
    """At most how many steps `build_plan` makes of a study, counted without making them."""
    per_run = 2 + bool(study.gauntlet.select_limit)  # finetune, select (and the chosen epoch's gauntlet)
    scored = sum(len(study.train_spec(run).checkpoint_epochs()) for run in study.runs)
    generates = {(name, pair.prompts) for pair in study.pairs for name in (pair.a, pair.b)}
    calibrated = bool(study.pairs and study.judge.calibration_pairs())
    others = len(study.baselines) + len(generates) + len(study.pairs) + calibrated + 1  # + the report
    cleaned = 2 * sum(ds.decontaminate for ds in study.datasets.values())  # its check, its cleaned copy
    checked = len({run.dataset for run in study.runs}) if study.contamination.check else 0
    return len(study.datasets) + per_run * len(study.runs) + scored + others + cleaned + checked


class Planner:
    """Adds a study's steps to a plan; each method is one piece of the DAG and returns what it added."""

    def __init__(self, study: Study, origin: str, gpu: Gpu):
        self.study, self.origin = study, origin
        self.plan = Plan(study, gpu=gpu)
        self.stats_model = study.models[study.stats_tokenizer or next(iter(study.models))]
        self.gauntlet_data_sha = local_tree_sha256(study.gauntlet.locations)
        # A judged model: the select step that chose its epoch (a run), or its spec (a baseline).
        self.judged: dict[str, tuple[Step | None, ModelSpec | None]] = {}
        self.report_models: list[ReportModel] = []
        self.report_pairs: list[ReportPair] = []

    def on_gpu(self, kind: str) -> bool:
        return self.study.resources.get(kind, KINDS[kind].resources).gpus > 0

    def add(self, step_id: str, kind: str, inp: StepInput, deps=(), resources: Resources | None = None) -> Step:
        resources = resources or self.study.resources.get(kind, KINDS[kind].resources)
        return self.plan.add(Step(step_id, kind, inp, tuple(deps), resources))

    def prepare(self, name: str) -> Step:
        """A dataset: loaded from its source, or a subset or mix of other prepared datasets."""
        ds, deps = self.study.datasets[name], []
        if ds.source:
            where = f"{self.origin}: datasets.{name}.source.jsonl"
            sha = local_file_sha256(ds.source.jsonl, where) if ds.source.jsonl else None
            inp = PrepareInput(source=ds.source, source_sha256=sha, template=self.study.template)
        elif ds.subset:
            check_subset_size(self.study, name, self.origin)
            parent = self.prepare(ds.subset.of)
            deps = [parent.id]
            inp = PrepareInput(subset=SubsetOf(of=parent.ref, sample=ds.subset.sample, seed=ds.subset.seed))
        else:
            members = [self.prepare(member) for member in ds.mix]
            deps = [m.id for m in members]
            inp = PrepareInput(mix=[m.ref for m in members])
        inp = inp.model_copy(update={"stats_tokenizer": self.stats_model, "tags": {"dataset": name}})
        step = self.add(f"prepare-{slug(name)}", "prepare", inp, deps)
        if not ds.decontaminate:
            return step
        check = self.contamination(name, step)
        clean = PrepareInput(decontaminate=Decontaminate(of=step.ref, check=check.ref))
        clean = clean.model_copy(update={"stats_tokenizer": self.stats_model, "tags": {"dataset": name}})
        return self.add(f"prepare-{slug(name)}-decontaminated", "prepare", clean, [step.id, check.id])

    def run(self, index: int) -> Step:
        """Finetune -> the gauntlet on each checkpoint -> select the best epoch."""
        run = self.study.runs[index]
        name, tags = run.run_name, {"run": run.run_name, "model": run.model, "dataset": run.dataset}
        train, cost = plan_finetune(self.study, index, self.plan.gpu, self.origin)
        data = self.prepare(run.dataset)
        checked = None
        if self.study.datasets[run.dataset].decontaminate:  # the report shows what was found, then dropped
            checked = self.plan.steps[f"contamination-{slug(run.dataset)}"]
        elif self.study.contamination.check:
            checked = self.contamination(run.dataset, data)
        inp = FinetuneInput(model=self.study.models[run.model], data=data.ref, train=train, tags=tags)
        if train.keep == "selected":
            inp = inp.model_copy(update={"pruned_by": self.selection_hash(name, tags, train.checkpoint_epochs())})
        resources = finetune_resources(self.study, index, train, cost, self.origin)
        finetune = self.add(f"finetune-{slug(name)}", "finetune", inp, [data.id], resources)
        self.plan.costs[finetune.id] = cost
        scored = [
            (
                epoch,
                self.gauntlet(
                    f"gauntlet-{slug(name)}-e{epoch}",
                    [finetune.id],
                    {**tags, "epoch": str(epoch)},
                    finetune=finetune.ref,
                    epoch=epoch,
                ),
            )
            for epoch in train.checkpoint_epochs()
        ]
        epochs = [EpochScore(epoch=epoch, gauntlet=step.ref) for epoch, step in scored]
        gauntlet = self.study.gauntlet
        split = gauntlet.seed if gauntlet.selection_split else None
        select = SelectInput(finetune=finetune.ref, epochs=epochs, keep=train.keep, split_seed=split, tags=tags)
        chosen = self.add(f"select-{slug(name)}", "select", select, [finetune.id, *(s.id for _, s in scored)])
        self.judged[name] = (chosen, None)
        full = None
        if self.study.gauntlet.select_limit:
            full = self.gauntlet(f"gauntlet-{slug(name)}-chosen", [chosen.id], tags, selection=chosen.ref)
        self.report_models.append(self.report_model(run, chosen, full, checked))
        return chosen

    def contamination(self, name: str, data: Step) -> Step:
        """A training dataset's 13-gram overlap with the study's gauntlet benchmarks and judge prompt sets."""
        shas = {}
        for key, prompts in self.study.prompts.items():
            local, field = (prompts.jsonl, "jsonl") if prompts.jsonl else (prompts.release_txt, "release_txt")
            shas[key] = local_file_sha256(local, f"{self.origin}: prompts.{key}.{field}") if local else None
        inp = ContaminationInput(
            data=data.ref,
            gauntlet=self.study.gauntlet,
            data_sha256=self.gauntlet_data_sha,
            prompts=self.study.prompts,
            prompts_sha256=shas,
            contamination=self.study.contamination,
            tags={"dataset": name},
        )
        return self.add(f"contamination-{slug(name)}", "contamination", inp, [data.id])

    def report_model(self, run: RunSpec, chosen: Step, full: Step | None, checked: Step | None) -> ReportModel:
        """What the report needs of a run: where its scores are, and its size, replicate group and seed."""
        origin = self.study.origin(run)
        return ReportModel(
            name=run.run_name,
            kind="run",
            model=run.model,
            dataset=run.dataset,
            selection=chosen.ref,
            gauntlet=full.ref if full else None,
            rows=dataset_rows(self.study.datasets, run.dataset),
            group=origin.group,
            series=origin.series,
            seed=origin.seed,
            contamination=checked.ref if checked else None,
        )

    def selection_hash(self, name: str, tags: dict[str, str], epochs: list[int]) -> str:
        """What decides which epochs `select` keeps: the gauntlet inputs of the epochs, less the finetune, and
        the selection split's seed where there is one."""
        probes = [
            self.gauntlet_input(f"gauntlet-{slug(name)}-e{epoch}", tags, finetune=None, epoch=epoch) for epoch in epochs
        ]
        decides = [p.model_dump(mode="json", exclude={"tags", "finetune"}) for p in probes]
        if self.study.gauntlet.selection_split:
            decides.append({"split_seed": self.study.gauntlet.seed})
        blob = json.dumps(decides, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def gauntlet(self, step_id: str, deps, tags: dict[str, str], **where) -> Step:
        """One model on the whole gauntlet: `where` is a base `model` or a `selection`; with a `finetune` and
        its `epoch`, a checkpoint to select among (on the first `select_limit` rows of each benchmark)."""
        step = self.add(step_id, "gauntlet", self.gauntlet_input(step_id, tags, **where), deps)
        if step.resources.gpus:
            cost = gauntlet_cost(step.input.gauntlet, self.study.models[tags["model"]], self.plan.gpu)
            self.plan.inference[step.id] = replace(cost, model=tags["model"])
        return step

    def gauntlet_input(self, step_id: str, tags: dict[str, str], **where) -> GauntletInput:
        spec = self.study.gauntlet
        if self.on_gpu("gauntlet"):
            spec = plan_gauntlet(spec, self.study.models[tags["model"]], self.plan.gpu, f"{self.origin}: {step_id}")
        if "epoch" in where and spec.select_limit:
            spec = spec.model_copy(update={"limit": spec.select_limit})
        return GauntletInput(gauntlet=spec, data_sha256=self.gauntlet_data_sha, tags=tags, **where)

    def baseline(self, name: str) -> Step:
        """A base model as it is: scored on the gauntlet, and judged where a pair names it."""
        spec = self.study.models[name]
        step = self.gauntlet(f"gauntlet-{slug(name)}", [], {"run": name, "model": name}, model=spec)
        self.judged[name] = (None, spec)
        self.report_models.append(ReportModel(name=name, kind="baseline", model=name, gauntlet=step.ref))
        return step

    def generate(self, model_name: str, prompts: str) -> Step:
        """A model's sampled responses to a prompt set (the plan shares it between the pairs that need it)."""
        selected, base = self.judged[model_name]
        prompt_set = self.study.prompts[prompts]
        local = prompt_set.jsonl or prompt_set.release_txt
        field = "jsonl" if prompt_set.jsonl else "release_txt"
        sha = local_file_sha256(local, f"{self.origin}: prompts.{prompts}.{field}") if local else None
        inp = GenerateInput(
            model=base,
            selection=selected.ref if selected else None,
            prompts=prompt_set,
            prompts_sha256=sha,
            generation=self.study.generation,
            template=self.study.template,
            tags={"run": model_name, "prompts": prompts},
        )
        step_id = f"generate-{slug(model_name)}-{slug(prompts)}"
        base_name = selected.input.tags["model"] if selected else model_name
        model = self.study.models[base_name]
        if self.on_gpu("generate"):
            gen = plan_generation(inp.generation, model, self.plan.gpu, f"{self.origin}: {step_id}")
            inp = inp.model_copy(update={"generation": gen})
        step = self.add(step_id, "generate", inp, [selected.id] if selected else [])
        if step.resources.gpus:
            cost = generation_cost(inp.generation, prompt_set, model, self.plan.gpu)
            self.plan.inference[step.id] = replace(cost, model=base_name)
        return step

    def pair(self, pair: Pair) -> Step:
        """Both models' responses to the pair's prompts, judged against each other."""
        a, b = self.generate(pair.a, pair.prompts), self.generate(pair.b, pair.prompts)
        judge = self.study.judge
        inp = JudgeInput(
            a=a.ref,
            b=b.ref,
            judge=judge.judging(),
            judge_model=self.judge_model(),
            tags={"a": pair.a, "b": pair.b, "prompts": pair.prompts},
        )
        step = self.add(f"judge-{slug(pair.a)}-vs-{slug(pair.b)}-{slug(pair.prompts)}", "judge", inp, [a.id, b.id])
        self.report_pairs.append(ReportPair(a=pair.a, b=pair.b, prompts=pair.prompts, judge=step.ref))
        return step

    def judge_model(self) -> ModelSpec | None:
        judge = self.study.judge
        return self.study.models[judge.local_model] if judge.backend == "local" else None

    def calibrate(self) -> Step | None:
        """The judge on released GPT-4-0613 verdicts, where the study judges pairs and asks for it
        (`judge.calibrate`); a missing release is refused here."""
        judge = self.study.judge
        pairs = judge.calibration_pairs()
        if not (self.study.pairs and pairs):
            return None
        if not local_path(judge.calibration_release).is_dir():
            raise LimitError(
                f"{self.origin}: judge.calibrate: the authors' release is not at {judge.calibration_release} "
                "(set judge.calibration_release, or judge.calibrate: 0)"
            )
        inp = CalibrateInput(
            judge=judge.judging(),
            judge_model=self.judge_model(),
            release=judge.calibration_release,
            pairs=pairs,
            seed=judge.bootstrap_seed,
            tags={"judge": judge.model if judge.backend == "openai" else f"local:{judge.local_model}"},
        )
        return self.add("calibrate", "calibrate", inp)

    def report(self) -> Step:
        """The tables and the figure, after every selection, baseline score and judgment."""
        deps = [
            s.id
            for s in self.plan.order()
            if s.kind in ("select", "judge", "contamination", "calibrate")
            or (s.kind == "gauntlet" and s.input.epoch is None)
        ]
        name = self.study.name
        calibrated = self.plan.steps.get("calibrate")
        inp = ReportInput(
            study=name,
            models=self.report_models,
            pairs=self.report_pairs,
            calibration=calibrated.ref if calibrated else None,
            bootstrap_seed=self.study.judge.bootstrap_seed,  # the judge steps' seed too: one interval per pair
            tags={"study": name},
        )
        return self.add("report", "report", inp, deps)
