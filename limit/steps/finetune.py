"""Step `finetune`: causal-LM finetuning with transformers' Trainer, loss on response tokens only.

Outputs: `epoch-N/` per epoch (HF format: safetensors, config, tokenizer; loadable by
AutoModelForCausalLM / AutoTokenizer) and `train_log.json` (Trainer's log history and a summary).

Schedule: linear warmup over `warmup_steps` optimizer steps, then linear decay to 0 at the end of the
last epoch (Trainer's "linear" schedule, as composer's LinearWithWarmupScheduler with alpha_f 0).
Batch: `global_batch_size` = micro batch x gradient accumulation x world size (one process per GPU).

Resume: Trainer saves its own checkpoint (weights, optimizer, scheduler, RNG) under `resume/` at the
end of every epoch, keeping the latest only; each epoch's weights are also exported to `epoch-N/`.
Both are persisted as soon as they exist, so a retried step continues from the last completed epoch.
`resume/` is deleted once training is done.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import mlflow
from transformers import TrainerCallback

from limit.cpu import configure_torch_threads
from limit.datasets_io import read_jsonl
from limit.errors import LimitError
from limit.models import load_tokenizer, model_location, tokenizer_location
from limit.optimizers import optimizer_cls_and_kwargs, trainer_weight_decay
from limit.runner import StepContext
from limit.spec import TrainSpec
from limit.steps.inputs import FinetuneInput
from limit.training_examples import encode_example

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
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, Trainer

    train = inp.train
    if train.gpus == 0:
        configure_torch_threads()
    elif not torch.cuda.is_available():
        raise LimitError(f"finetune: train.gpus is {train.gpus} but no GPU is visible")

    tokenizer = load_tokenizer(tokenizer_location(inp.model, ctx.workdir), inp.model.revision)
    rows = read_jsonl(ctx.fetch(inp.data) / "data.jsonl")
    encoded = [encode_example(tokenizer, r["prompt"], r["response"], train.max_seq_len) for r in rows]
    examples = [e for e in encoded if e is not None]
    if not examples:
        raise LimitError(
            f"finetune: no example of {inp.data} keeps a response token at max_seq_len {train.max_seq_len}"
        )

    # TrainingArguments before the model: with ZeRO-3 it makes from_pretrained shard the weights as they load.
    args = training_arguments(train, ctx.out / RESUME, run_name=inp.tags.get("run", "finetune"))
    model = AutoModelForCausalLM.from_pretrained(
        model_location(inp.model, ctx.workdir),
        revision=inp.model.revision,
        trust_remote_code=inp.model.trust_remote_code,
        dtype=torch.float32,  # fp32 master weights; bf16 runs under autocast (or DeepSpeed's bf16 mode)
    )
    if args.process_index == 0:
        mlflow.log_params({f"train.{k}": v for k, v in train.model_dump().items()})
        mlflow.log_params({"train.rows": len(rows), "train.examples": len(examples)})

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(examples),
        data_collator=DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=8 if train.gpus else None),
        processing_class=tokenizer,
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(train),
        callbacks=[EpochExport(ctx)],
    )
    checkpoint = last_checkpoint(ctx.out / RESUME)
    resumed = checkpoint_state(checkpoint) if checkpoint else None
    if checkpoint and args.process_index == 0:
        export_epoch(checkpoint, ctx, overwrite=False)  # the attempt may have died before exporting it
        print(f"finetune: resuming from {checkpoint.name} (epoch {round(resumed['epoch'])})", flush=True)

    started = time.time()
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.time() - started
    if args.process_index != 0:
        return {}

    state = trainer.state
    tokens_before = resumed.get("num_input_tokens_seen", 0) if resumed else 0
    tokens_now = int(state.num_input_tokens_seen) - tokens_before
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    summary = {
        "epochs": train.epochs,
        "steps": state.global_step,
        "train_loss": losses[-1] if losses else float("nan"),
        "train_loss_mean": result.training_loss,
        "train_examples": len(examples),
        "train_tokens": int(state.num_input_tokens_seen),
        "tokens_per_second": round(tokens_now / seconds, 2) if tokens_now else 0.0,
        "resumed_from_step": resumed["global_step"] if resumed else 0,
    }
    missing = [n for n in range(1, train.epochs + 1) if not (ctx.out / f"epoch-{n}" / "config.json").is_file()]
    if missing:
        raise LimitError(f"finetune: training ended without checkpoints for epochs {missing}")
    log = {"summary": summary, "dropped_too_long": len(encoded) - len(examples), "log_history": state.log_history}
    (ctx.out / "train_log.json").write_text(json.dumps(log, indent=2))
    ctx.discard(RESUME)
    print(
        f"finetune: {summary['steps']} steps, final loss {summary['train_loss']:.4f}, "
        f"{summary['tokens_per_second']:.0f} tokens/s",
        flush=True,
    )
    return summary


def training_arguments(train: TrainSpec, output_dir: Path, run_name: str):
    from transformers import TrainingArguments

    world_size = max(train.gpus, 1)
    return TrainingArguments(
        output_dir=str(output_dir),
        run_name=run_name,
        per_device_train_batch_size=train.micro_batch_size,
        gradient_accumulation_steps=train.global_batch_size // (train.micro_batch_size * world_size),
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
        include_num_input_tokens_seen="non_padding",
        report_to=["mlflow"],  # loss, learning rate, grad norm per step into the step's active MLflow run
        disable_tqdm=not sys.stderr.isatty(),  # a bar on a terminal; in pod logs, Trainer prints a line per step
        dataloader_num_workers=0,
        ddp_timeout=3 * 3600,  # rank 0 persisting a large checkpoint keeps the others waiting
    )


def deepspeed_config(train: TrainSpec) -> dict:
    """ZeRO at the spec's stage; "auto" values are filled in by Trainer from the TrainingArguments."""
    return {
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


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete Trainer checkpoint (trainer_state.json is written last) in `folder`."""
    if not folder.is_dir():
        return None
    complete = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


def checkpoint_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "trainer_state.json").read_text())


def export_epoch(checkpoint: Path, ctx: StepContext, overwrite: bool = True) -> None:
    """Copy the model and tokenizer of a Trainer checkpoint into `epoch-N/`, atomically, and persist it."""
    epoch = round(checkpoint_state(checkpoint)["epoch"])
    target = ctx.out / f"epoch-{epoch}"
    if target.is_dir() and not overwrite:  # renamed into place whole, so it is complete
        return
    staging = ctx.out / f".epoch-{epoch}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for path in checkpoint.iterdir():
        if path.is_file() and path.name not in TRAINING_STATE and not path.name.startswith("rng_state"):
            link_or_copy(path, staging / path.name)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    ctx.persist(target.name)
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
