"""What a plan costs, in totals: steps by kind, GPU pods and GPU-hours, wall-clock time, judge calls and dollars.

GPU-hours come from the planner's estimates (limit/costs.py: finetunes from their data's tokens, the gauntlet
from each benchmark's forwarded tokens, generation from its prompts and new tokens); a step the planner cannot
size says why. The wall-clock time schedules the DAG's GPU steps, each as soon as its inputs are done and a
GPU pod may start (the profile's `gpu_semaphore.pods` and `parallelism`); CPU steps and judge calls are not
timed. A judge call is one (prompt, seed) of one pair; its tokens are assumed to be
TOKENS_PER_JUDGMENT, the mean of the LIMIT authors' 11,214 released GPT-4-0613 judgments (~730 tokens each,
prompt and answer), and its price is alpaca-eval's for the judge model.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from limit.data.prompts import count_prompts
from limit.plan.dag import Plan

TOKENS_PER_JUDGMENT = 730


@dataclass
class KindTotal:
    steps: int = 0
    gpu_pods: int = 0
    gpus: int = 0  # summed over the kind's GPU pods
    gpu_hours: float | None = 0.0  # None: some GPU step of the kind has no estimate


@dataclass
class JudgeTotal:
    model: str
    calls: int | None  # None: a prompt set's size is unknown before generate reads it
    dollars: float | None
    price_per_token: float | None
    unknown_prompts: list[str] = field(default_factory=list)


@dataclass
class MethodTotal:
    """A base model's finetunes as if all trained one way: the largest GiB per device, the GPU-hours summed."""

    memory_gib: float = 0.0
    gpu_hours: float | None = 0.0


@dataclass
class ModelFinetunes:
    """A base model's finetunes: the largest estimated peak per device, and each run's GPU-hours."""

    memory_gib: float | None = None
    budget_gib: float | None = None
    hours: dict[str, float | None] = field(default_factory=dict)  # by run, less the model's name


@dataclass(frozen=True)
class Slots:
    """How many pods may run at once: GPU pods (the profile's semaphore) and all pods (its parallelism)."""

    gpu_pods: int | None = None  # None: no cap
    pods: int | None = None


@dataclass
class PlanSummary:
    kinds: dict[str, KindTotal]
    judge: JudgeTotal | None
    # base model -> method (full, lora) -> its finetunes' totals, where the planner knows the model's shape
    methods: dict[str, dict[str, MethodTotal]] = field(default_factory=dict)
    finetunes: dict[str, ModelFinetunes] = field(default_factory=dict)  # by base model
    unknown: dict[str, str] = field(default_factory=dict)  # by kind: why some of its GPU steps have no estimate
    estimated: tuple[str, ...] = ()  # gauntlet benchmarks sized by the shipped table's estimate, not a count
    wall_hours: float | None = None  # under `slots`, where every GPU step has an estimate
    slots: Slots | None = None
    hour_usd: float | None = None  # the profile's price of a GPU-hour

    @property
    def gpu_pods(self) -> int:
        return sum(k.gpu_pods for k in self.kinds.values())

    @property
    def gpu_hours_known(self) -> float:
        return sum(k.gpu_hours or 0.0 for k in self.kinds.values())

    @property
    def gpu_hours_unknown(self) -> list[str]:
        return list(self.unknown)

    @property
    def dollars(self) -> tuple[float | None, float | None]:
        """(the GPUs', the judge's) dollars, None where unknown."""
        gpus = None if self.hour_usd is None or self.gpu_hours_unknown else self.gpu_hours_known * self.hour_usd
        return gpus, self.judge.dollars if self.judge else 0.0


def summarize(
    plan: Plan, price: float | None, slots: Slots | None = None, hour_usd: float | None = None
) -> PlanSummary:
    """`price`: the judge's dollars per token (judge.backends.price_per_token); `slots`: the cluster's caps on
    pods at once, for the wall-clock time (None: not scheduled); `hour_usd`: a GPU-hour's price."""
    kinds: dict[str, KindTotal] = {}
    unknown: dict[str, str] = {}
    for step in plan.order():
        total = kinds.setdefault(step.kind, KindTotal())
        total.steps += 1
        if not step.resources.gpus:
            continue
        total.gpu_pods += 1
        total.gpus += step.resources.gpus
        hours = plan.gpu_hours(step.id)
        total.gpu_hours = None if hours is None or total.gpu_hours is None else total.gpu_hours + hours
        if hours is None:
            cost = plan.inference.get(step.id)
            unknown.setdefault(step.kind, cost.unknown if cost else "model shape or data size unknown")
    summary = PlanSummary(kinds, judge_total(plan, price), method_totals(plan), finetunes_by_model(plan), unknown)
    summary.estimated = tuple(sorted({name for cost in plan.inference.values() for name in cost.estimated}))
    summary.slots, summary.hour_usd = slots, hour_usd
    summary.wall_hours = wall_clock(plan, slots) if slots and not unknown else None
    return summary


def wall_clock(plan: Plan, slots: Slots) -> float:
    """Hours from the first step to the last when every step starts as soon as its inputs are done and a slot is
    free (list scheduling in the order steps become ready); a GPU step lasts its GPU-hours over its GPUs, a
    CPU step no time."""
    free = {kind: [0.0] * n for kind, n in (("gpu", slots.gpu_pods), ("pod", slots.pods)) if n}
    steps = plan.order()
    position = {s.id: i for i, s in enumerate(steps)}
    waits_on = {s.id: set(s.deps) for s in steps}
    needed_by: dict[str, list[str]] = {s.id: [] for s in steps}
    for s in steps:
        for dep in waits_on[s.id]:
            needed_by[dep].append(s.id)
    ready = [(0.0, position[s.id]) for s in steps if not s.deps]  # (when its inputs are done, plan order)
    finished: dict[str, float] = {}
    while ready:
        start, i = heapq.heappop(ready)
        step, gpus = steps[i], steps[i].resources.gpus
        held = [kind for kind in free if kind == "pod" or gpus]
        start = max([start] + [free[kind][0] for kind in held])
        finished[step.id] = start + (plan.gpu_hours(step.id) or 0.0) / gpus if gpus else start
        for kind in held:
            heapq.heapreplace(free[kind], finished[step.id])
        for later in needed_by[step.id]:
            waits_on[later].discard(step.id)
            if not waits_on[later]:
                inputs_done = max(finished[d] for d in plan.steps[later].deps)
                heapq.heappush(ready, (inputs_done, position[later]))
    return max(finished.values(), default=0.0)


def method_totals(plan: Plan) -> dict[str, dict[str, MethodTotal]]:
    """Each base model's GPU finetunes trained full and with LoRA (limit/plan/sizing.py's `method_costs`)."""
    totals: dict[str, dict[str, MethodTotal]] = {}
    for step in plan.by_kind("finetune"):
        cost = plan.costs.get(step.id)
        if not step.input.train.gpus or cost is None or not cost.methods:
            continue
        for method, (gib, hours) in cost.methods.items():
            total = totals.setdefault(step.input.tags["model"], {}).setdefault(method, MethodTotal())
            total.memory_gib = max(total.memory_gib, gib)
            total.gpu_hours = None if hours is None or total.gpu_hours is None else total.gpu_hours + hours
    return totals


def finetunes_by_model(plan: Plan) -> dict[str, ModelFinetunes]:
    found: dict[str, ModelFinetunes] = {}
    for step in plan.by_kind("finetune"):
        cost, tags = plan.costs.get(step.id), step.input.tags
        entry = found.setdefault(tags["model"], ModelFinetunes())
        run = tags.get("run", tags["dataset"]).removeprefix(f"{tags['model']}-")  # a LoRA run beside its full one
        entry.hours[run] = cost.gpu_hours if cost else None
        if cost and cost.memory is not None:
            entry.memory_gib = max(entry.memory_gib or 0.0, cost.memory.gib)
            entry.budget_gib = cost.budget_gib
    return found


def judge_total(plan: Plan, price: float | None) -> JudgeTotal | None:
    judges = plan.by_kind("judge")
    if not judges:
        return None
    study = plan.study
    sizes = {name: count_prompts(spec) for name, spec in study.prompts.items()}
    unknown = sorted({step.input.tags["prompts"] for step in judges if sizes[step.input.tags["prompts"]] is None})
    seeds = len(study.generation.seeds)
    calls = None if unknown else sum(seeds * sizes[step.input.tags["prompts"]] for step in judges)
    dollars = None if calls is None or price is None else calls * TOKENS_PER_JUDGMENT * price
    model = study.judge.model if study.judge.backend == "openai" else f"local:{study.judge.local_model}"
    return JudgeTotal(model, calls, dollars, price, unknown)


def describe(summary: PlanSummary, gpu_note: str) -> list[str]:
    """The summary as console lines; `gpu_note` says what the GPU-hours assume (profile, MFU)."""
    lines = [f"{'kind':13} {'steps':>5}  GPU pods (GPUs)  GPU-hours"]
    for kind, total in summary.kinds.items():
        pods = f"{total.gpu_pods} ({total.gpus})" if total.gpu_pods else "-"
        hours = "-" if not total.gpu_pods else "unknown" if total.gpu_hours is None else f"~{total.gpu_hours:,.1f}"
        lines.append(f"{kind:13} {total.steps:>5}  {pods:>15}  {hours}")
    steps = sum(k.steps for k in summary.kinds.values())
    if not summary.gpu_pods:
        lines.append(f"{'total':13} {steps:>5}  {'-':>15}  - (CPU only)")
    else:
        unknown = summary.gpu_hours_unknown
        hours = f"~{summary.gpu_hours_known:,.1f}" + (" + unknown" if unknown else "")
        if unknown and not summary.gpu_hours_known:
            hours = "unknown"
        lines.append(f"{'total':13} {steps:>5}  {summary.gpu_pods:>15}  {hours}")
        why = "".join(f"; no {kind} estimate: {why}" for kind, why in summary.unknown.items())
        lines.append(f"GPU-hours: {gpu_note}{why}")
        if summary.estimated:
            estimated = ", ".join(summary.estimated)
            lines.append(f"  gauntlet: {estimated} sized from upstream row counts (files not at hand)")
        lines += schedule_lines(summary)
    if summary.methods:
        lines.append("full vs LoRA (every finetune of a base one way; LoRA: the runs' own, else r 8 all-linear):")
        lines += [method_line(model, methods) for model, methods in summary.methods.items()]
    lines += [finetunes_line(model, entry) for model, entry in summary.finetunes.items()]
    if summary.judge:
        lines.append(judge_line(summary.judge))
    return lines


def schedule_lines(summary: PlanSummary) -> list[str]:
    """The wall-clock time under the profile's caps and the study's dollars, where they can be known."""
    lines = []
    if summary.slots is not None:
        gpu_pods, pods = summary.slots.gpu_pods, summary.slots.pods
        caps = [f"{n} {what}{'s' * (n > 1)}" for n, what in ((gpu_pods, "GPU pod"), (pods, "pod")) if n]
        under = f"at most {' and '.join(caps)} at once" if caps else "no cap on pods at once"
        when = "unknown (some GPU step has no estimate)" if summary.wall_hours is None else duration(summary.wall_hours)
        lines.append(f"wall-clock: {when}, {under} (profile gpu_semaphore.pods, parallelism); GPU steps only")
    gpus, judge = summary.dollars
    if summary.gpu_pods and gpus is None:
        why = "set gpu_hour_usd in the profile" if summary.hour_usd is None else "some GPU step has no estimate"
        lines.append(f"dollars: GPUs unknown ({why})")
    elif summary.gpu_pods:
        judged = f" + judge ~${judge:,.0f} = ~${gpus + judge:,.0f}" if judge is not None else " + judge unknown"
        judged = judged if summary.judge else ""
        lines.append(f"dollars: GPUs ~${gpus:,.0f} at ${summary.hour_usd:.2f}/GPU-hour (profile gpu_hour_usd){judged}")
    return lines


def duration(hours: float) -> str:
    return f"~{hours * 60:.0f} min" if hours < 1 else f"~{hours:,.1f} h" if hours < 48 else f"~{hours / 24:,.1f} days"


def method_line(model: str, methods: dict[str, MethodTotal]) -> str:
    def one(total: MethodTotal) -> str:
        hours = "unknown" if total.gpu_hours is None else f"~{total.gpu_hours:,.1f}"
        return f"{total.memory_gib:,.1f} GiB/GPU, {hours} GPU-hours"

    return f"  {model}: full {one(methods['full'])} | lora {one(methods['lora'])}"


def finetunes_line(model: str, entry: ModelFinetunes) -> str:
    """One line per base model: its finetunes' peak memory per device and each one's GPU-hours."""
    if entry.memory_gib is None:
        memory = "memory unknown (model shape unknown)"
    else:
        device = f"per GPU (of {entry.budget_gib:g})" if entry.budget_gib else "per CPU process"
        memory = f"~{entry.memory_gib:,.1f} GiB {device}"
    hours = [f"{dataset} {'?' if h is None else f'~{h:,.1f}'}" for dataset, h in entry.hours.items()]
    gpu = any(h is not None for h in entry.hours.values()) or entry.budget_gib
    return f"finetunes of {model}: {memory}" + (f"; GPU-hours {', '.join(hours)}" if gpu else "")


def judge_line(judge: JudgeTotal) -> str:
    if judge.calls is None:
        return f"judge: {judge.model}, calls unknown (prompt sets of unknown size: {', '.join(judge.unknown_prompts)})"
    if judge.dollars is None:
        cost = "price unknown"
    elif judge.price_per_token == 0:
        cost = "no API cost (local judge)"
    else:
        price = judge.price_per_token * 1000
        dollars = f"{judge.dollars:,.0f}" if judge.dollars >= 10 else f"{judge.dollars:.2f}"
        cost = f"~${dollars} at ${price:.3f}/1k tokens, ~{TOKENS_PER_JUDGMENT} tokens each"
    return f"judge: {judge.model}, {judge.calls:,} calls, {cost}"
