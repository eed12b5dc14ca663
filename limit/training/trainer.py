"""How Trainer is set up for the paper's recipe: batches (packed or padded), arguments, DeepSpeed's config,
and where its checkpoints are.

Schedule: linear warmup over `warmup_steps` optimizer steps, then linear decay to 0 at the end of the
last epoch (Trainer's "linear" schedule, as composer's LinearWithWarmupScheduler with alpha_f 0).
Batch: `global_batch_size` = micro batch x gradient accumulation x world size (one process per GPU, or per
CPU process standing in for one: `cpu_processes`, the same DeepSpeed path on CPU).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path

from transformers import TrainerCallback

from limit.errors import LimitError
from limit.spec.study import TrainSpec
from limit.training.examples import IGNORE_INDEX
from limit.training.optimizers import trainer_weight_decay


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
    """Trainer's arguments; under torchrun the process group is joined here, before the model loads, so that
    ZeRO-3 partitions the weights as they load across the whole world (DeepSpeed's config, read at load,
    otherwise counts a world of one and refuses the batch)."""
    if train.ranks and importlib.util.find_spec("deepspeed") is None:
        raise LimitError("finetune: gpus and cpu_processes train through DeepSpeed: pip install 'limit[gpu]'")
    args = _arguments(train, output_dir, run_name)
    if train.ranks:
        import deepspeed

        args.device  # noqa: B018 (the property sets up the device and joins the process group)
        deepspeed.init_distributed()  # on CPU (use_cpu) transformers joins through torch alone: DeepSpeed's view
    return args


def _arguments(train: TrainSpec, output_dir: Path, run_name: str):
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
        **checkpointing_arguments(train.gradient_checkpointing),
        deepspeed=deepspeed_config(train) if train.ranks else None,
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


def checkpointing_arguments(enabled: bool) -> dict:
    """Reentrant activation checkpointing, under the name the installed transformers takes
    (`activation_checkpointing` from 5.23, `gradient_checkpointing` before).

    Reentrant, not transformers' non-reentrant default: ZeRO-3 gathers partitioned parameters again during
    the recompute, which the non-reentrant checkpoint's saved-tensor checks have refused (transformers#47254),
    and compiled flex under the non-reentrant one has fallen back to its dense backward (pytorch#147879).
    """
    from dataclasses import fields

    from transformers import TrainingArguments

    names = {f.name for f in fields(TrainingArguments)}
    name = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    kwargs = {"use_reentrant": True} if enabled else None
    return {name: enabled, f"{name}_kwargs": kwargs}


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


def checkpoint_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "trainer_state.json").read_text())


class CheckpointEvery(TrainerCallback):
    """Trainer saves at every epoch's end; keep only the spec's checkpoint epochs (every N, and the last)."""

    def __init__(self, train: TrainSpec):
        self.epochs = set(train.checkpoint_epochs())

    def on_epoch_end(self, args, state, control, **kwargs):
        if round(state.epoch) not in self.epochs:
            control.should_save = False
        return control


def without_tied_copies(model, state_dict: dict) -> dict:
    """The state dict less each tied weight's copy (MPT's lm_head.weight beside transformer.wte.weight).

    Under DeepSpeed the state dict Trainer saves holds copies (accelerate's get_state_dict clones each tensor
    at ZeRO-0/1/2), so transformers, which finds ties by shared storage, would write the embedding twice:
    0.4 GB more per epoch for MPT-7B, 0.7 GB for 30B. transformers ties it again on load."""
    tied = getattr(model, "_tied_weights_keys", None)
    if not isinstance(tied, dict) or not getattr(model.config, "tie_word_embeddings", False):
        return state_dict
    return {name: value for name, value in state_dict.items() if not (name in tied and tied[name] in state_dict)}


@functools.cache
def export_trainer_class():
    """transformers' Trainer, saving a tied weight once (`without_tied_copies`); made when first asked for, so
    that the finetune's launcher, which only starts its ranks, never imports Trainer."""
    from transformers import Trainer

    class ExportTrainer(Trainer):
        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            if state_dict is not None:
                state_dict = without_tied_copies(self.accelerator.unwrap_model(self.model), state_dict)
            super()._save(output_dir, state_dict=state_dict)

    return ExportTrainer
