"""Step `finetune`: causal-LM finetuning with transformers' Trainer, loss on response tokens only.

Outputs: `epoch-N/` per checkpoint epoch (every `checkpoint_every`, and the last; HF format: safetensors,
config, tokenizer; loadable by AutoModelForCausalLM / AutoTokenizer; with `method: lora` the epoch's adapters
merged into the base's weights, limit/training/lora.py) and `train_log.json` (Trainer's log history and a
summary).

The recipe reads top to bottom: data, model (with document-local attention: MPT's own, or transformers' for the
RoPE families, limit/models/rope.py; the summary names the kernel), memory check, Trainer
(limit/training/trainer.py sets it up), resume, train, summary. The schedule and batch arithmetic are in
limit/training/trainer.py.

Resume: Trainer saves its own checkpoint (weights, optimizer, scheduler, RNG) under `resume/` at the end of
every checkpoint epoch, keeping the latest only; its weights are also exported to `epoch-N/`. Both are
persisted as soon as they exist (uploaded in the background on S3, while training goes on; the epoch's local
copy is then released), so a retried step continues from the last completed checkpoint, downloading the
newest complete training state only. `resume/` is deleted once training is done.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import mlflow
from transformers import TrainerCallback

from limit.costs import (
    GIB,
    Gpu,
    Memory,
    PeakMemory,
    Shape,
    card_peak_tflops,
    finetune_flops,
    finetune_memory,
    gpu_hours,
    shape_of,
)
from limit.cpu import configure_torch_threads
from limit.data.chat import require_chat_template
from limit.errors import LimitError
from limit.execution import progress
from limit.execution.context import StepContext
from limit.execution.io import read_jsonl
from limit.models import rope
from limit.models.base import load_tokenizer, loading, model_location, tokenizer_location
from limit.models.mpt import attention as mpt_attention
from limit.spec.study import TrainSpec
from limit.steps.inputs import FinetuneInput
from limit.training.examples import encode_chat, encode_example
from limit.training.lora import ADAPTER_FILES, merge_checkpoint, one_rank_loading, parameter_counts, with_adapters
from limit.training.optimizers import optimizer_cls_and_kwargs
from limit.training.probe import WorstCaseProbe, worst_batch
from limit.training.trainer import (
    CheckpointEvery,
    checkpoint_state,
    collator,
    export_trainer_class,
    last_checkpoint,
    training_arguments,
)

RESUME = "resume"
# Files of a Trainer checkpoint that are training state, not the model an epoch folder should hold.
TRAINING_STATE = {
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "trainer_state.json",
    "training_args.bin",
    "latest",  # DeepSpeed: names its global_step folder
    "zero_to_fp32.py",
    "zero_to_torch.py",  # DeepSpeed 0.19 names its consolidation script so
}


def finetune(inp: FinetuneInput, ctx: StepContext) -> dict:
    train = inp.train
    device = select_device(train)
    tokenizer = load_tokenizer(tokenizer_location(inp.model, ctx.workdir), inp.model.revision)
    rows = read_jsonl(ctx.fetch(inp.data) / "data.jsonl")
    examples = encode_rows(rows, tokenizer, train, inp.data)

    # TrainingArguments before the model: with ZeRO-3 it makes from_pretrained shard the weights as they load.
    args = training_arguments(train, ctx.out / RESUME, run_name=inp.tags.get("run", "finetune"))
    peak = PeakMemory(device)
    peak.start()  # before the model: measured and planned peaks count the same terms
    model, kernel = load_model(inp, ctx, train, device)
    trainable, _ = parameter_counts(model)
    estimate = check_memory(model, train, examples, device)
    if args.process_index == 0:
        mlflow.log_params({f"train.{k}": v for k, v in train.model_dump().items()})
        mlflow.log_params({"train.rows": len(rows), "train.examples": len(examples)})

    batch = worst_batch(examples, train.micro_batch_size, collator(train, tokenizer))
    probe = WorstCaseProbe(train, batch, estimate, peak, plan_facts(model, train, examples, device, inp))
    merge = adapter_merger(inp, ctx, train)
    trainer = make_trainer(model, args, train, tokenizer, examples, EpochExport(ctx, merge), probe)
    with args.main_process_first(local=True):  # every rank reads the restored state from this pod's disk
        if args.process_index == 0:
            restore_checkpoint(ctx)
    checkpoint = last_checkpoint(ctx.out / RESUME)
    resumed = checkpoint_state(checkpoint) if checkpoint else None
    if checkpoint and args.process_index == 0:
        export_epoch(checkpoint, ctx, overwrite=False, merge=merge)  # the attempt may have died before exporting
        print(f"finetune: resuming from {checkpoint.name} (epoch {round(resumed['epoch'])})", flush=True)

    started = time.time()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if args.process_index != 0:
        return {}
    summary = summarize(trainer, result, resumed, time.time() - started, len(examples))
    summary |= {"memory_estimate_gib": round(estimate.gib, 4), "memory_peak_gib": round(peak.peak_gib(), 4)}
    summary |= {"method": train.method, "trainable_params": trainable}
    summary["attention"] = kernel
    if probe.measurement is not None:
        summary |= {f"probe_{k}": v for k, v in asdict(probe.measurement).items() if v is not None}
    missing = [n for n in train.checkpoint_epochs() if not exported(ctx, n)]
    if missing:
        raise LimitError(f"finetune: training ended without checkpoints for epochs {missing}")
    log = {"summary": summary, "dropped_too_long": len(rows) - len(examples), "log_history": trainer.state.log_history}
    (ctx.out / "train_log.json").write_text(json.dumps(log, indent=2))
    ctx.discard(RESUME)
    print(
        f"finetune: {summary['steps']} steps, final loss {summary['train_loss']:.4f}, "
        f"{summary['tokens_per_second']:.0f} tokens/s, peak memory {summary['memory_peak_gib']:.3f} GiB "
        f"(estimated {summary['memory_estimate_gib']:.3f}), {kernel} attention",
        flush=True,
    )
    return summary


def select_device(train: TrainSpec) -> str:
    import torch

    if train.gpus == 0:
        configure_torch_threads()
        return "cpu"
    if not torch.cuda.is_available():
        raise LimitError(f"finetune: train.gpus is {train.gpus} but no GPU is visible")
    return "cuda"


def encode_rows(rows: list[dict], tokenizer, train: TrainSpec, data: str) -> list[dict]:
    """Training examples (loss on the response, or the assistant's turns, only); rows whose response would be
    cut away entirely drop. Conversations (template: chat) are rendered by the tokenizer's chat template."""
    if any("messages" in r for r in rows):
        require_chat_template(tokenizer, "finetune")
    encoded = [
        encode_chat(tokenizer, r["messages"], train.max_seq_len)
        if "messages" in r
        else encode_example(tokenizer, r["prompt"], r["response"], train.max_seq_len)
        for r in rows
    ]
    examples = [e for e in encoded if e is not None]
    if not examples:
        raise LimitError(f"finetune: no example of {data} keeps a response token at max_seq_len {train.max_seq_len}")
    return examples


def load_model(inp: FinetuneInput, ctx: StepContext, train: TrainSpec, device: str):
    """The base as it trains, and its attention kernel's name: document-local attention for its family; with
    LoRA, wrapped in frozen adapters (after the attention, which the adapters' wrapper hides)."""
    model = load_base(inp, ctx, train)
    kernel = install_attention(model, train, device)
    if train.lora is not None:
        model = with_adapters(model, train.lora, train.seed, train.gradient_checkpointing)
        trainable, total = parameter_counts(model)
        print(f"finetune: LoRA (r {train.lora.r}) trains {trainable:,} of {total:,} parameters", flush=True)
    return model, kernel


def load_base(inp: FinetuneInput, ctx: StepContext, train: TrainSpec):
    import torch
    from transformers import AutoModelForCausalLM

    location = model_location(inp.model, ctx.workdir)
    with loading(location):
        model = AutoModelForCausalLM.from_pretrained(
            location,
            revision=inp.model.revision,
            trust_remote_code=inp.model.trust_remote_code,
            # DeepSpeed's bf16 mode keeps the fp32 master weights in its optimizer: the module loads as it runs.
            dtype=torch.bfloat16 if train.gpus and train.precision == "bf16" else torch.float32,
        )
    return model


def adapter_merger(inp: FinetuneInput, ctx: StepContext, train: TrainSpec):
    """LoRA: what writes an epoch's plain checkpoint from a Trainer checkpoint's adapters (the base loaded
    again, untouched by training, in training's dtype); None for a full finetune, whose checkpoint is one."""
    if train.lora is None:
        return None

    def merge(checkpoint: Path, out: Path) -> None:
        with one_rank_loading():  # rank 0 alone merges, while the other ranks go on training
            base = load_base(inp, ctx, train)
        merge_checkpoint(checkpoint, base, out)

    return merge


def install_attention(model, train: TrainSpec, device: str) -> str:
    """Document-local attention for the model's family; the kernel's name. A family limit does not support is
    refused (its packed documents would attend to each other)."""
    kind = model_shape(model).family
    if kind == "mpt":
        mpt_attention.install(model, train.attention)
        head_dim = model.config.d_model // model.config.n_heads
        return mpt_attention.resolve(train.attention, device, head_dim)
    return rope.install(model, train.attention, device)


def model_shape(model) -> Shape:
    return shape_of(model.config.to_dict(), type(model).__name__)


def check_memory(model, train: TrainSpec, examples: list[dict], device: str) -> Memory:
    """The planner's estimate at this data's longest row; on a GPU, refuse before training what cannot fit."""
    shape = model_shape(model)
    stage = train.zero_stage if train.gpus else 0
    estimate = finetune_memory(shape, train, stage, max(len(e["input_ids"]) for e in examples), device)
    if device == "cuda":
        import torch

        available = torch.cuda.get_device_properties(0).total_memory / GIB
        if estimate.gib > available:
            raise LimitError(
                f"finetune: estimated {estimate.describe()} per GPU, over this GPU's {available:.0f} GiB: "
                "lower micro_batch_size or max_seq_len, or use attention flex"
            )
    print(f"finetune: estimated peak memory per device {estimate.describe()}", flush=True)
    return estimate


def plan_facts(model, train: TrainSpec, examples: list[dict], device: str, inp: FinetuneInput) -> dict:
    """What the probe compares its measurement with: the data's real tokens, the model FLOPs per token, the
    card's peak and the planner's wall-clock time (at its assumed MFU on the default GPU)."""
    import torch

    shape = model_shape(model)
    tokens = sum(len(e["input_ids"]) for e in examples)
    flops_per_token = finetune_flops(shape, 1, tokens / len(examples), train.lora)
    facts = {"run": inp.tags.get("run", ""), "tokens": tokens, "flops_per_token": flops_per_token}
    if device == "cuda":
        facts["peak_tflops"] = card_peak_tflops(torch.cuda.get_device_name())
        hours = gpu_hours(finetune_flops(shape, tokens * train.epochs, tokens / len(examples), train.lora), Gpu())
        facts["eta_s"] = round(hours * 3600 / train.gpus, 1)
    return facts


def make_trainer(model, args, train: TrainSpec, tokenizer, examples: list[dict], export: EpochExport, probe):
    import datasets

    trainer = export_trainer_class()(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(examples),
        data_collator=collator(train, tokenizer),
        processing_class=tokenizer,
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(train),
        callbacks=[probe, CheckpointEvery(train), export, TrainProgress()],
    )
    probe.trainer = trainer
    return trainer


def summarize(trainer, result, resumed: dict | None, seconds: float, examples: int) -> dict:
    state = trainer.state
    tokens_before = resumed.get("num_input_tokens_seen", 0) if resumed else 0
    tokens_now = int(state.num_input_tokens_seen) - tokens_before
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    return {
        "epochs": trainer.args.num_train_epochs,
        "steps": state.global_step,
        "train_loss": losses[-1] if losses else float("nan"),
        "train_loss_mean": result.training_loss,
        "train_examples": examples,
        "train_tokens": int(state.num_input_tokens_seen),
        "tokens_per_second": round(tokens_now / seconds, 2) if tokens_now else 0.0,
        "train_seconds": round(seconds, 3),
        "resumed_from_step": resumed["global_step"] if resumed else 0,
    }


def restore_checkpoint(ctx: StepContext) -> None:
    """Bring back the newest complete training state an earlier attempt made durable, and nothing else: not
    older states, not a newer one whose upload the kill cut short, not the epochs' weights."""
    steps = [
        int(name.split("/")[1].removeprefix("checkpoint-"))
        for name in ctx.stored(RESUME)
        if name.count("/") == 2 and name.endswith("/trainer_state.json")  # written last, uploaded last
    ]
    if steps:
        ctx.restore(f"{RESUME}/checkpoint-{max(steps)}")


def exported(ctx: StepContext, epoch: int) -> bool:
    """Whether `epoch-N/` is durable (its folder is renamed into place whole, so any file of it will do)."""
    return f"epoch-{epoch}/config.json" in ctx.stored(f"epoch-{epoch}")


def export_epoch(checkpoint: Path, ctx: StepContext, overwrite: bool = True, merge=None) -> None:
    """Link the model and tokenizer of a Trainer checkpoint into `epoch-N/`, atomically, and persist both;
    with `merge` (LoRA), the tokenizer is linked and `merge(checkpoint, folder)` writes the merged model.

    Once durable the epoch's weights are released: on S3 the pod's disk keeps the latest training state only.
    """
    epoch = round(checkpoint_state(checkpoint)["epoch"])
    target = ctx.out / f"epoch-{epoch}"
    if not overwrite and exported(ctx, epoch):
        return
    staging = ctx.out / f".epoch-{epoch}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    skipped = TRAINING_STATE | (ADAPTER_FILES if merge else set())
    for path in checkpoint.iterdir():
        if path.is_file() and path.name not in skipped and not path.name.startswith("rng_state"):
            link_or_copy(path, staging / path.name)
    if merge:
        merge(checkpoint, staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    ctx.persist(target.name, release=True)
    ctx.persist(RESUME)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard links cost no space (multi-GB weights); the checkpoint's later deletion leaves the link intact."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class EpochExport(TrainerCallback):
    """After each epoch's checkpoint: export the epoch folder and persist both (main process only)."""

    def __init__(self, ctx: StepContext, merge=None):
        self.ctx, self.merge = ctx, merge

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            export_epoch(checkpoint, self.ctx, merge=self.merge)
            print(f"finetune: epoch {round(state.epoch)} saved (step {state.global_step})", flush=True)
        return control


class TrainProgress(TrainerCallback):
    """A progress line (epoch, step, loss, real tokens/s, ETA) every EVERY_S seconds and at each epoch's end,
    from the main process; rates count this attempt only, so a resumed run's ETA is not flattered."""

    EVERY_S = 5.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.last = time.time(), 0.0
        self.first_step, self.first_tokens = state.global_step, state.num_input_tokens_seen
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if time.time() - self.last >= self.EVERY_S:
            self._emit(args, state)
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        self._emit(args, state)
        return control

    def _emit(self, args, state) -> None:
        if not state.is_world_process_zero:
            return
        self.last = time.time()
        elapsed = max(self.last - self.started, 1e-9)
        done = state.global_step - self.first_step
        losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
        progress.emit(
            "train",
            epoch=round(state.epoch or 0.0, 3),
            epochs=args.num_train_epochs,
            step=state.global_step,
            steps=state.max_steps,
            loss=losses[-1] if losses else None,
            tokens_per_second=round((state.num_input_tokens_seen - self.first_tokens) / elapsed, 1),
            eta_s=round((state.max_steps - state.global_step) * elapsed / done) if done else None,
        )
