"""Step `finetune`: causal-LM finetuning with transformers' Trainer, loss on response tokens only.

Outputs: `epoch-N/` per epoch (HF format: safetensors, config, tokenizer; loadable by
AutoModelForCausalLM / AutoTokenizer) and `train_log.json` (Trainer's log history and a summary).

Schedule: linear warmup over `warmup_steps` optimizer steps, then linear decay to 0 at the end of the
last epoch (Trainer's "linear" schedule, as composer's LinearWithWarmupScheduler with alpha_f 0).
Batch: `global_batch_size` = micro batch x gradient accumulation x world size (one process per GPU).

Resume: Trainer saves its own checkpoint (weights, optimizer, scheduler, RNG) under `resume/` at the
end of every epoch, keeping the latest only; each epoch's weights are also exported to `epoch-N/`.
Both are persisted as soon as they exist (uploaded in the background on S3, while training goes on; the
epoch's local copy is then released), so a retried step continues from the last completed epoch, downloading
the newest complete training state only. `resume/` is deleted once training is done.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import mlflow
from transformers import MptForCausalLM, TrainerCallback

from limit.costs import GIB, Memory, PeakMemory, Shape, finetune_memory
from limit.cpu import configure_torch_threads
from limit.errors import LimitError
from limit.io import read_jsonl
from limit.models import load_tokenizer, model_location, tokenizer_location
from limit.mpt.attention import install as install_attention
from limit.optimizers import optimizer_cls_and_kwargs, trainer_weight_decay
from limit.spec import TrainSpec
from limit.steps.context import StepContext
from limit.steps.inputs import FinetuneInput
from limit.training_examples import IGNORE_INDEX, encode_example

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
}


def finetune(inp: FinetuneInput, ctx: StepContext) -> dict:
    train = inp.train
    device = select_device(train)
    tokenizer = load_tokenizer(tokenizer_location(inp.model, ctx.workdir), inp.model.revision)
    rows = read_jsonl(ctx.fetch(inp.data) / "data.jsonl")
    examples = encode_rows(rows, tokenizer, train, inp.data)

    # TrainingArguments before the model: with ZeRO-3 it makes from_pretrained shard the weights as they load.
    args = training_arguments(train, ctx.out / RESUME, run_name=inp.tags.get("run", "finetune"))
    model = load_model(inp, ctx, train)
    estimate = check_memory(model, train, examples, device)
    if args.process_index == 0:
        mlflow.log_params({f"train.{k}": v for k, v in train.model_dump().items()})
        mlflow.log_params({"train.rows": len(rows), "train.examples": len(examples)})

    trainer = make_trainer(model, args, train, tokenizer, examples, ctx)
    with args.main_process_first(local=True):  # every rank reads the restored state from this pod's disk
        if args.process_index == 0:
            restore_checkpoint(ctx)
    checkpoint = last_checkpoint(ctx.out / RESUME)
    resumed = checkpoint_state(checkpoint) if checkpoint else None
    if checkpoint and args.process_index == 0:
        export_epoch(checkpoint, ctx, overwrite=False)  # the attempt may have died before exporting it
        print(f"finetune: resuming from {checkpoint.name} (epoch {round(resumed['epoch'])})", flush=True)

    peak = PeakMemory(device)
    peak.start()
    started = time.time()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if args.process_index != 0:
        return {}
    summary = summarize(trainer, result, resumed, time.time() - started, len(examples))
    summary |= {"memory_estimate_gib": round(estimate.gib, 4), "memory_peak_gib": round(peak.peak_gib(), 4)}
    missing = [n for n in range(1, train.epochs + 1) if not exported(ctx, n)]
    if missing:
        raise LimitError(f"finetune: training ended without checkpoints for epochs {missing}")
    log = {"summary": summary, "dropped_too_long": len(rows) - len(examples), "log_history": trainer.state.log_history}
    (ctx.out / "train_log.json").write_text(json.dumps(log, indent=2))
    ctx.discard(RESUME)
    print(
        f"finetune: {summary['steps']} steps, final loss {summary['train_loss']:.4f}, "
        f"{summary['tokens_per_second']:.0f} tokens/s, peak memory {summary['memory_peak_gib']:.3f} GiB "
        f"(estimated {summary['memory_estimate_gib']:.3f})",
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
    """Training examples (loss on the response only); rows whose response would be cut away entirely drop."""
    encoded = [encode_example(tokenizer, r["prompt"], r["response"], train.max_seq_len) for r in rows]
    examples = [e for e in encoded if e is not None]
    if not examples:
        raise LimitError(f"finetune: no example of {data} keeps a response token at max_seq_len {train.max_seq_len}")
    return examples


def load_model(inp: FinetuneInput, ctx: StepContext, train: TrainSpec):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        model_location(inp.model, ctx.workdir),
        revision=inp.model.revision,
        trust_remote_code=inp.model.trust_remote_code,
        # DeepSpeed's bf16 mode keeps the fp32 master weights in its optimizer, so the module loads as it runs.
        dtype=torch.bfloat16 if train.gpus and train.precision == "bf16" else torch.float32,
    )
    if isinstance(model, MptForCausalLM):
        install_attention(model, train.attention)
    elif train.packing:
        print(f"finetune: {type(model).__name__} packs through transformers' own position_ids support", flush=True)
    return model


def check_memory(model, train: TrainSpec, examples: list[dict], device: str) -> Memory:
    """The planner's estimate at this data's longest row; on a GPU, refuse before training what cannot fit."""
    config = model.config
    shape = Shape(config.d_model, config.n_layers, config.n_heads, config.vocab_size)
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


def make_trainer(model, args, train: TrainSpec, tokenizer, examples: list[dict], ctx: StepContext):
    import datasets
    from transformers import Trainer

    return Trainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(examples),
        data_collator=collator(train, tokenizer),
        processing_class=tokenizer,
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(train),
        callbacks=[EpochExport(ctx)],
    )


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
        "resumed_from_step": resumed["global_step"] if resumed else 0,
    }


def collator(train: TrainSpec, tokenizer):
    """Packed: each micro-batch's rows concatenated into one row, documents told apart by their positions
    (transformers' padding-free form; the first label of each row is dropped, as shifting drops it unpacked).
    Otherwise padded to the micro-batch's longest row, or to max_seq_len as the paper did."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if train.packing:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    if train.pad_to_max:
        return DataCollatorForSeq2Seq(tokenizer, padding="max_length", max_length=train.max_seq_len)
    return DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=8 if train.gpus else None)


def training_arguments(train: TrainSpec, output_dir: Path, run_name: str):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        run_name=run_name,
        per_device_train_batch_size=train.micro_batch_size,
        gradient_accumulation_steps=train.accumulation,
        num_train_epochs=train.epochs,
        learning_rate=train.lr,
        adam_beta1=train.betas[0],
        adam_beta2=train.betas[1],
        adam_epsilon=train.eps,
        weight_decay=trainer_weight_decay(train),
        lr_scheduler_type="linear",
        warmup_steps=train.warmup_steps,
        max_grad_norm=train.grad_clip,
        bf16=train.precision == "bf16",
        seed=train.seed,
        data_seed=train.seed,
        activation_checkpointing=train.gradient_checkpointing,
        deepspeed=deepspeed_config(train) if train.gpus > 0 else None,
        use_cpu=train.gpus == 0,
        save_strategy="epoch",
        save_total_limit=1,
        logging_strategy="steps",
        logging_steps=1,
        logging_first_step=True,
        # Packed rows hold no padding; padded ones count their attention mask (MPT's pad token is its EOS).
        include_num_input_tokens_seen="all" if train.packing else "non_padding",
        report_to=["mlflow"],  # loss, learning rate, grad norm per step into the step's active MLflow run
        disable_tqdm=not sys.stderr.isatty(),  # a bar on a terminal; in pod logs, Trainer prints a line per step
        dataloader_num_workers=0,
        ddp_timeout=3 * 3600,  # writing a 30B checkpoint (hundreds of GB) keeps every rank in one collective
    )


def deepspeed_config(train: TrainSpec) -> dict:
    """ZeRO at the planned stage; "auto" values are filled in by Trainer from the TrainingArguments.

    Micro-steps accumulated in bf16 lose the small gradients of a long accumulation: ZeRO accumulates
    them in fp32 instead (DeepSpeed supports that mix with ZeRO only, so stage 0 keeps the model's dtype).
    """
    if train.zero_stage == "auto":
        raise LimitError("finetune: train.zero_stage is 'auto': the plan resolves it before a GPU finetune runs")
    config = {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": train.precision == "bf16"},
        "zero_optimization": {
            "stage": train.zero_stage,
            "overlap_comm": True,
            "contiguous_gradients": True,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_gather_16bit_weights_on_model_save": True,  # full safetensors in every checkpoint
        },
        "zero_allow_untested_optimizer": True,  # Lion
        "wall_clock_breakdown": False,
    }
    if train.precision == "bf16" and train.accumulation > 1 and train.zero_stage > 0:
        config["data_types"] = {"grad_accum_dtype": "fp32"}
    return config


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete Trainer checkpoint (trainer_state.json is written last) in `folder`."""
    if not folder.is_dir():
        return None
    complete = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


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


def checkpoint_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "trainer_state.json").read_text())


def export_epoch(checkpoint: Path, ctx: StepContext, overwrite: bool = True) -> None:
    """Link the model and tokenizer of a Trainer checkpoint into `epoch-N/`, atomically, and persist both.

    Once durable the epoch's weights are released: on S3 the pod's disk keeps the latest training state only.
    """
    epoch = round(checkpoint_state(checkpoint)["epoch"])
    target = ctx.out / f"epoch-{epoch}"
    if not overwrite and exported(ctx, epoch):
        return
    staging = ctx.out / f".epoch-{epoch}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for path in checkpoint.iterdir():
        if path.is_file() and path.name not in TRAINING_STATE and not path.name.startswith("rng_state"):
            link_or_copy(path, staging / path.name)
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

    def __init__(self, ctx: StepContext):
        self.ctx = ctx

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            export_epoch(checkpoint, self.ctx)
            print(f"finetune: epoch {round(state.epoch)} saved (step {state.global_step})", flush=True)
        return control
