"""The finetune's worst case, measured on its own device before the first optimizer step.

Before training, the `micro_batch_size` longest examples, collated as training collates them (one packed row,
or a padded batch), go forward and backward through the model exactly as training will run it: the DeepSpeed
engine where there is one, its ZeRO stage, precision, checkpointing and attention. No micro-batch of the
data holds more tokens, so its peak memory bounds every step's. The loss is multiplied by zero: the backward
does all its work and allocates all its memory, but every gradient it adds is zero, and the RNG state is
restored after it, so training's numbers are those of a run without the probe. It runs twice: the first
compiles and warms up, the second is timed for tokens/s, MFU and the ETA.

Too big for the device (its memory, or `LIMIT_DEVICE_MEMORY_GIB` where set) is refused in one line, exit 2.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback

from limit.costs import GIB, Memory, PeakMemory
from limit.errors import LimitError
from limit.execution import progress
from limit.spec.study import TrainSpec

MEMORY_LIMIT = "LIMIT_DEVICE_MEMORY_GIB"


@dataclass
class Measurement:
    tokens: int
    peak_gib: float
    planned_gib: float
    capacity_gib: float
    tokens_per_second: float
    eta_s: float | None
    planned_eta_s: float | None
    mfu: float | None


def worst_batch(examples: list[dict], micro_batch_size: int, collate) -> dict[str, torch.Tensor]:
    longest = sorted(examples, key=lambda e: len(e["input_ids"]), reverse=True)[:micro_batch_size]
    return collate(longest)


def device_capacity_gib(device: str) -> float:
    """What the device holds: its memory, or less where `LIMIT_DEVICE_MEMORY_GIB` says so."""
    if os.environ.get(MEMORY_LIMIT):
        return float(os.environ[MEMORY_LIMIT])
    if device == "cuda":
        return torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory / GIB
    meminfo = Path("/proc/meminfo")
    lines = meminfo.read_text().splitlines() if meminfo.is_file() else []
    total = next((float(line.split()[1]) * 1024 for line in lines if line.startswith("MemTotal:")), float("inf"))
    return total / GIB


class WorstCaseProbe(TrainerCallback):
    """Measures the worst micro-batch at `on_train_begin` (after DeepSpeed is set up, before any step)."""

    def __init__(self, train: TrainSpec, batch: dict, estimate: Memory, peak: PeakMemory, plan: dict):
        self.train, self.batch, self.estimate, self.peak, self.plan = train, batch, estimate, peak, plan
        self.trainer = None  # set once the Trainer exists: the probe runs through its (wrapped) model
        self.measurement: Measurement | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.measurement = m = self.measure(args)  # a resumed attempt measures too: it may be on another node
        if args.process_index == 0:  # (Trainer sets state.is_world_process_zero after on_train_begin)
            progress.emit("probe", **asdict(m))
            words = progress.describe({"what": "probe", **asdict(m)})
            print(f"finetune: {words}", flush=True)
            if m.planned_eta_s and m.eta_s and m.eta_s > 2 * m.planned_eta_s:
                print(f"finetune: WARNING: the measured ETA is over twice the plan's ({words})", flush=True)
        return control

    def measure(self, args) -> Measurement:
        model = self.trainer.model_wrapped
        batch = {k: v.to(args.device) for k, v in self.batch.items()}
        real = int(batch["input_ids"].numel()) if self.train.packing else int(batch["attention_mask"].sum())
        capacity = device_capacity_gib(self.peak.device)
        rng = _rng_state()
        try:
            self._pass(model, batch)  # compiles, warms up
            started = time.perf_counter()
            self._pass(model, batch)
            seconds = time.perf_counter() - started
        except torch.OutOfMemoryError:
            self._refuse(real, float("inf"), capacity)
        finally:
            _set_rng_state(rng)
        peak = self.peak.peak_gib()
        if peak > capacity:
            self._refuse(real, peak, capacity)
        return self._measurement(real, peak, capacity, seconds, args.world_size)

    def _pass(self, model, batch: dict) -> None:
        loss = model(**batch).loss * 0.0  # the backward's full work and memory, zero gradients
        if hasattr(model, "backward"):  # a DeepSpeed engine: its ZeRO hooks and buffers, as in training
            model.backward(loss)
        else:
            loss.backward()
        if self.peak.device == "cuda":
            torch.cuda.synchronize()

    def _measurement(self, real: int, peak: float, capacity: float, seconds: float, world: int) -> Measurement:
        rate = real / seconds if seconds > 0 else 0.0
        total = self.plan.get("tokens", 0) * self.train.epochs
        flops_per_token = self.plan.get("flops_per_token")
        peak_flops = self.plan.get("peak_tflops")
        mfu = rate * flops_per_token / (peak_flops * 1e12) if flops_per_token and peak_flops else None
        return Measurement(
            tokens=real,
            peak_gib=round(peak, 4),
            planned_gib=round(self.estimate.gib, 4),
            capacity_gib=round(capacity, 2),
            tokens_per_second=round(rate, 1),
            eta_s=round(total / (rate * max(world, 1)), 1) if rate else None,
            planned_eta_s=self.plan.get("eta_s"),
            mfu=round(mfu, 4) if mfu is not None else None,
        )

    def _refuse(self, tokens: int, peak: float, capacity: float) -> None:
        measured = "runs out of memory" if peak == float("inf") else f"peaks at {peak:.2f} GiB"
        raise LimitError(
            f"finetune {self.plan.get('run', '')}: the largest micro-batch ({tokens} tokens) {measured} on this "
            f"device, over its {capacity:.2f} GiB (planned {self.estimate.gib:.2f}): lower "
            "training.micro_batch_size or training.max_seq_len, or set training.gradient_checkpointing"
        )


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
