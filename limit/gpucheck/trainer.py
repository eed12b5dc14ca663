"""Stage `trainer`: the finetune recipe itself, through `limit step finetune` as a pod runs it.

On a GPU: a ~200M MPT (tiny-built: d_model 1024, 12 layers, 16 heads) on the LIMA fixture, one GPU under
torchrun with DeepSpeed ZeRO-3, bf16 with fp32 accumulation (2 micro-batches a step), reentrant activation
checkpointing, packing and flex, two epochs with a checkpoint each. The first attempt is killed once epoch 1
is exported; a fresh process resumes it. Reported: per-step losses, seconds per optimizer step, the probe's
measured peak and tokens/s, and the planner's memory terms beside the measured peak. In smoke: the tiny MPT,
fp32 on CPU, the same kill and resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from limit.execution import outputs
from limit.execution.store import Store
from limit.gpucheck.context import CheckContext

LIMA = {"jsonl": "fixture:tiny/lima.jsonl", "conversations": "conversations", "templated": False}
STUDY = {
    "name": "check-gpu",
    "models": {"mpt": {"tiny": {"d_model": 1024, "n_layers": 12, "n_heads": 16, "max_seq_len": 1024}}},
    "datasets": {"lima": {"source": LIMA}},
    "training": {
        "defaults": {
            "lr": 1.0e-4,
            "global_batch_size": 8,
            "micro_batch_size": 4,
            "max_seq_len": 1024,
            "epochs": 2,
            "warmup_steps": 1,
            "gpus": 1,
            "zero_stage": 3,
            "precision": "bf16",
            "gradient_checkpointing": True,
            "attention": "flex",
        }
    },
    "runs": [{"name": "check", "model": "mpt", "dataset": "lima"}],
    "gauntlet": {"suite": "tiny", "data": "fixture:gauntlet"},  # planned, never run here
}
SMOKE = {"tiny": {"d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 256, "vocab_size": 1024}}
SMOKE_TRAINING = {"gpus": 0, "zero_stage": 0, "precision": "fp32", "attention": "sdpa", "max_seq_len": 256}


def run(ctx: CheckContext) -> dict:
    from limit.plan import build_plan
    from limit.spec.study import load_study

    study_file = write_study(ctx)
    plan = build_plan(load_study(str(study_file)))
    prepare, finetune = plan.steps["prepare-lima"], plan.steps["finetune-check"]
    env = environment(ctx)
    result: dict = {"steps": [prepare.ref, finetune.ref], "logs": str(ctx.workdir / "logs")}
    subprocess.run(command(prepare), env=env, check=True, **logs(ctx, "prepare"))
    killed = kill_after_first_epoch(command(finetune), env, ctx, finetune.ref)
    started = time.time()
    resumed = subprocess.run(command(finetune), env=env, **logs(ctx, "finetune-resume"))
    result |= {"killed_after_epoch_1": killed, "resume_exit": resumed.returncode, "resume_s": time.time() - started}
    manifest = Store(str(ctx.workdir / "artifacts"), ctx.workdir).manifest(finetune.ref)
    if resumed.returncode or manifest is None:
        return result | {"ok": False, "error": f"the resumed finetune exited {resumed.returncode}"}
    summary = manifest["summary"]
    cost = plan.costs.get(finetune.id)
    result |= measured(summary, ctx.workdir / "artifacts" / finetune.ref / "train_log.json")
    result["planned_terms_gib"] = {k: round(v / 2**30, 3) for k, v in cost.memory.terms.items()} if cost else None
    result["ok"] = killed and summary["resumed_from_step"] > 0 and summary["steps"] == result["optimizer_steps"]
    result["headline"] = (
        f"{summary['steps']} steps, resumed from {summary['resumed_from_step']}, loss {summary['train_loss']:.3f}, "
        f"peak {summary.get('probe_peak_gib', 0):.2f} GiB (planned {summary['memory_estimate_gib']:.2f}), "
        f"{summary.get('probe_tokens_per_second', 0):,.0f} tokens/s"
    )
    return result


def command(step) -> list[str]:
    """The step's own argv, run by this interpreter: a bare GPU machine has the code on PYTHONPATH, not
    an installed `limit` on PATH."""
    return [sys.executable, "-m", "limit.cli", *step.argv[1:]]


def write_study(ctx: CheckContext) -> Path:
    study = json.loads(json.dumps(STUDY))
    if ctx.smoke:
        study["models"]["mpt"] = SMOKE
        study["training"]["defaults"] |= SMOKE_TRAINING
    path = ctx.workdir / "check-gpu.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def environment(ctx: CheckContext) -> dict[str, str]:
    work = ctx.workdir
    return {
        **os.environ,
        "LIMIT_WORKDIR": str(work),
        "LIMIT_ARTIFACTS": str(work / "artifacts"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "PYTHONUNBUFFERED": "1",
    }


def logs(ctx: CheckContext, name: str) -> dict:
    folder = ctx.workdir / "logs"
    folder.mkdir(exist_ok=True)
    handle = open(folder / f"{name}.log", "w")  # noqa: SIM115 (the child writes it; closed with the process)
    return {"stdout": handle, "stderr": subprocess.STDOUT}


def kill_after_first_epoch(argv: list[str], env: dict, ctx: CheckContext, ref: str) -> bool:
    """SIGKILL to the finetune's whole process group (torchrun and its ranks) once epoch 1 is exported."""
    epoch = ctx.workdir / "artifacts" / f"{ref}.partial" / "epoch-1" / "config.json"
    process = subprocess.Popen(argv, env=env, start_new_session=True, **logs(ctx, "finetune-killed"))
    while process.poll() is None and not epoch.is_file():
        time.sleep(0.2)
    if process.poll() is not None:
        return False
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return True


def measured(summary: dict, train_log: Path) -> dict:
    history = outputs.read(train_log, outputs.TrainLog).log_history
    losses = [round(e["loss"], 5) for e in history if "loss" in e]
    steps_run = max(1, summary["steps"] - summary["resumed_from_step"])
    return {
        "optimizer_steps": len(losses),
        "losses": losses,
        "seconds_per_step_resumed": round(summary["train_seconds"] / steps_run, 3),
        "summary": summary,
    }
