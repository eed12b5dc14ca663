"""`limit status`: where a half-finished study stands, read from the artifact store alone (a folder or S3)."""

from __future__ import annotations

import time

import pytest
import yaml

from limit.cli import main as cli
from limit.execution.store import Store
from limit.plan import build_plan
from limit.spec.study import STUDIES_DIR, load_study


def partial(store: Store, ref: str, files: list[str], sub: str) -> None:
    """Files a running step has made durable (locally: in its .partial folder; on S3: uploaded)."""
    out = store.begin(ref)
    for name in files:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("{}")
    store.persist(ref, out, sub)
    store.wait()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_status_of_a_half_finished_study(limit_env, where, request, monkeypatch, capsys):
    if where == "s3":
        monkeypatch.setenv("LIMIT_ARTIFACTS", f"s3://{request.getfixturevalue('s3_env')}/artifacts")
    plan = build_plan(load_study("tiny"))
    store = Store.open()
    steps = plan.steps
    for step in plan.by_kind("prepare"):
        out = store.begin(step.ref)
        store.commit(step.ref, out, {"kind": "prepare", "summary": {}})
    now = time.time()
    lima, mix, base = steps["finetune-tiny-lima"], steps["finetune-tiny-mix"], steps["gauntlet-tiny-mpt"]
    partial(store, lima.ref, ["epoch-1/config.json", "epoch-1/model.safetensors"], "epoch-1")
    train = {"what": "train", "epoch": 1.5, "epochs": 2, "step": 9, "steps": 12, "loss": 6.5, "eta_s": 20}
    running = {"state": "running", "host": "node-1", "pid": 41, "started": now - 60, "heartbeat": now - 5}
    probe = {"what": "probe", "tokens": 1024, "peak_gib": 61.2, "planned_gib": 58.9, "capacity_gib": 80.0}
    probe |= {"tokens_per_second": 41000.0, "eta_s": 7865, "planned_eta_s": 7080, "mfu": 0.38}
    store.write_attempt(lima.ref, running | {"progress": train, "probe": probe})
    store.write_attempt(mix.ref, running | {"state": "failed", "ended": now - 30, "tail": ["ValueError: boom"]})
    partial(store, base.ref, ["details/tiny_arc.json", "details/tiny_copa.json"], "details")
    store.write_attempt(base.ref, running | {"heartbeat": now - 3600})

    assert cli(["status", "tiny"]) == 0
    out = capsys.readouterr().out
    assert f"{len(steps)} steps: 4 done, 1 running, 12 pending, 2 failed" in out  # 2 contamination checks
    lines = {
        line.split()[1]: line
        for line in out.splitlines()[1:]
        if line.split()[0] in ("done", "running", "pending", "failed", "lost")
    }
    assert lines["prepare-lima"].split()[0] == "done"
    assert (
        lines["finetune-tiny-lima"].split()[0] == "running" and "[epochs 1/2 finished]" in lines["finetune-tiny-lima"]
    )
    assert "epoch 1.50/2, step 9/12, loss 6.5000" in out and "node-1 pid 41" in out
    assert (
        "61.20 GiB measured (planned 58.90) of 80.00; 41,000 tokens/s, MFU 38.0%, ETA 2:11:05 (planned 1:58:00)" in out
    )
    assert lines["finetune-tiny-mix"].split()[0] == "failed" and "| ValueError: boom" in out
    assert lines["gauntlet-tiny-mpt"].split()[0] == "lost" and "[benchmarks 2/6 finished]" in lines["gauntlet-tiny-mpt"]
    assert "no heartbeat for 1:00:00" in out
    assert lines["report"].split()[0] == "pending"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_verify_reads_every_file_and_marks_a_changed_step_not_done(limit_env, where, request, monkeypatch, capsys):
    if where == "s3":
        monkeypatch.setenv("LIMIT_ARTIFACTS", f"s3://{request.getfixturevalue('s3_env')}/artifacts")
    plan = build_plan(load_study("tiny"))
    store = Store.open()
    prepares = plan.by_kind("prepare")
    for step in prepares:
        out = store.begin(step.ref)
        (out / "data.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
        store.commit(step.ref, out, {"kind": "prepare", "summary": {}})
    assert cli(["verify", "tiny"]) == 0
    assert f"{len(prepares)} completed steps read, 0 did not match" in capsys.readouterr().out

    changed = prepares[0].ref
    body = b'{"prompt": "p", "response": "R"}\n'  # same size, one byte changed
    if where == "s3":
        store.s3.put_object(Bucket=store.bucket, Key=store._key(changed, "data.jsonl"), Body=body)
    else:
        (limit_env / "artifacts" / changed / "data.jsonl").write_bytes(body)
    assert cli(["verify", "tiny"]) == 1
    captured = capsys.readouterr()
    assert f"{len(prepares)} completed steps read, 1 did not match" in captured.out
    assert captured.err.strip().splitlines() == [
        f"{store.url(changed)}/data.jsonl: sha256 differs from the manifest's (same size: its bytes were changed): "
        "the step is marked not done; run again to redo it"
    ]
    assert store.manifest(changed) is None


def test_an_empty_manifest_is_one_line_and_the_step_not_done(limit_env, capsys):
    plan = build_plan(load_study("tiny"))
    store = Store.open()
    step = plan.by_kind("prepare")[0]
    out = store.begin(step.ref)
    store.commit(step.ref, out, {"kind": "prepare", "summary": {}})
    (limit_env / "artifacts" / step.ref / "_manifest.json").write_text("")
    assert cli(["status", "tiny"]) == 0
    captured = capsys.readouterr()
    assert f"  pending  {step.id}" in captured.out
    assert captured.err.count("_manifest.json: unreadable (a torn write): the step is not done") == 1


def test_status_shows_gpu_hours_spent_against_the_plan(limit_env, tmp_path, capsys):
    data = yaml.safe_load((STUDIES_DIR / "tiny.yaml").read_text())
    data["training"]["defaults"]["gpus"] = 2
    for name in ("lima", "instruct-v1"):
        data["datasets"][name]["source"]["expect"] = {"rows": 2000, "tokens_mean": 300}
    data["resources"] = {"gauntlet": {"gpus": 1}, "generate": {"gpus": 1}}
    spec = tmp_path / "tiny-gpu.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    plan = build_plan(load_study(str(spec)))
    store, now = Store.open(), time.time()
    finetune, gauntlet = plan.steps["finetune-tiny-lima"], plan.steps["gauntlet-tiny-mpt"]
    out = store.begin(finetune.ref)
    store.commit(finetune.ref, out, {"kind": "finetune", "summary": {}, "seconds": 5400.0})
    store.write_attempt(
        gauntlet.ref, {"state": "running", "host": "n", "pid": 1, "started": now - 1800, "heartbeat": now}
    )

    assert cli(["status", str(spec)]) == 0
    text = capsys.readouterr().out
    gpu_steps = [s for s in plan.order() if s.resources.gpus]
    planned = sum(plan.gpu_hours(s.id) for s in (finetune, gauntlet))
    total = sum(plan.gpu_hours(s.id) for s in gpu_steps)
    head = f"GPU-hours: spent 3.5 in 2 of {len(gpu_steps)} GPU steps (planned ~{planned:,.1f} for them)"
    assert f"{head}; planned ~{total:,.1f} in all" in text  # 1.5 h on 2 GPUs, and half an hour so far on one
    line = next(x for x in text.splitlines() if "finetune-tiny-lima" in x)
    assert line.split()[0] == "done" and f"3.00 GPU-h (planned ~{plan.gpu_hours(finetune.id):,.2f})" in line
