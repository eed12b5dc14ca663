"""The artifact store, local and S3 over HTTP (moto server): manifest last, resume from partial outputs."""

from __future__ import annotations

import pytest

from limit.errors import LimitError
from limit.execution.store import MANIFEST, Store


def _exercise(store: Store, retry: Store) -> None:
    """`retry` is the store as a retried attempt sees it (another pod, for S3)."""
    ref = "prepare/0123456789abcdef0123"
    assert store.manifest(ref) is None
    with pytest.raises(LimitError, match="not complete"):
        store.fetch(ref)

    out = store.begin(ref)
    (out / "epoch-1").mkdir()
    (out / "epoch-1" / "weights.bin").write_bytes(b"\x00" * 100)
    store.persist(ref, out, "epoch-1")
    store.wait()  # the upload finished before the pod was killed
    assert store.manifest(ref) is None, "persisted partial output is not a complete step"

    resumed = retry.begin(ref)
    assert retry.stored(ref, resumed, "epoch-1") == ["epoch-1/weights.bin"]
    retry.restore(ref, resumed, "epoch-1")
    assert (resumed / "epoch-1" / "weights.bin").read_bytes() == b"\x00" * 100
    (resumed / "data.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    retry.commit(ref, resumed, {"kind": "prepare", "summary": {"rows": 1}})

    assert store.manifest(ref)["summary"] == {"rows": 1}
    folder = store.fetch(ref)
    assert (folder / "data.jsonl").read_text().startswith('{"prompt"')
    assert (folder / MANIFEST).is_file()
    assert (store.fetch(ref, sub="epoch-1") / "weights.bin").stat().st_size == 100


def test_local_store(tmp_path):
    store = Store.open(str(tmp_path / "artifacts"), tmp_path)
    _exercise(store, store)
    assert not list((tmp_path / "artifacts").rglob("*.partial")), "the partial folder was renamed into place"


def test_s3_store(tmp_path, s3_env):
    store = Store.open(f"s3://{s3_env}/some/prefix", tmp_path / "pod-a")
    _exercise(store, Store.open(store.root, tmp_path / "pod-retry"))
    keys = [o["Key"] for o in store.s3.list_objects_v2(Bucket=s3_env)["Contents"]]
    assert "some/prefix/prepare/0123456789abcdef0123/_manifest.json" in keys
    other_pod = Store.open(f"s3://{s3_env}/some/prefix", tmp_path / "pod-b")
    assert (other_pod.fetch("prepare/0123456789abcdef0123") / "data.jsonl").is_file()


def test_s3_persist_mirrors_the_folder(tmp_path, s3_env):
    """A superseded resume checkpoint is deleted from S3 too, so a retry does not download it."""
    store = Store.open(f"s3://{s3_env}/p", tmp_path / "pod")
    ref = "finetune/00000000000000000000"
    out = store.begin(ref)
    for step in (5, 10):
        old = out / "resume" / f"checkpoint-{step - 5}"
        if old.exists():
            (old / "optimizer.pt").unlink()
            old.rmdir()
        (out / "resume" / f"checkpoint-{step}").mkdir(parents=True)
        (out / "resume" / f"checkpoint-{step}" / "optimizer.pt").write_bytes(b"state")
        store.persist(ref, out, "resume")
    store.wait()
    retry_store = Store.open(store.root, tmp_path / "retry")
    retry = retry_store.begin(ref)
    assert list(retry.iterdir()) == []  # a retry downloads only what it asks for
    retry_store.restore(ref, retry, "resume")
    assert [p.name for p in (retry / "resume").iterdir()] == ["checkpoint-10"]


def test_s3_persist_uploads_in_the_background_and_commit_waits(tmp_path, s3_env):
    """The step goes on (and may delete its files) while a large upload runs; commit waits for it."""
    import threading

    store = Store.open(f"s3://{s3_env}/p", tmp_path / "pod")
    ref = "finetune/11111111111111111111"
    out = store.begin(ref)
    (out / "epoch-1").mkdir()
    (out / "epoch-1" / "model.safetensors").write_bytes(b"w" * 1000)
    release = threading.Event()
    upload = store.s3.upload_file

    def slow_upload(*args, **kwargs):
        release.wait(timeout=30)
        return upload(*args, **kwargs)

    store.s3.upload_file = slow_upload
    store.persist(ref, out, "epoch-1", release=True)  # returns before the upload
    assert not (out / "epoch-1").exists(), "released: the pod's disk no longer holds the epoch"
    committing = threading.Thread(target=store.commit, args=(ref, out, {"kind": "finetune", "summary": {}}))
    committing.start()
    committing.join(timeout=1)
    assert committing.is_alive() and store.manifest(ref) is None, "commit waits for the upload"
    release.set()
    committing.join(timeout=30)
    assert list(store.manifest(ref)["files"]) == ["epoch-1/model.safetensors"]


def test_local_store_keeps_what_is_released(tmp_path):
    """A local artifact folder is the durable copy: `release` leaves it in place."""
    store = Store.open(str(tmp_path / "artifacts"), tmp_path)
    ref = "finetune/22222222222222222222"
    out = store.begin(ref)
    (out / "epoch-1").mkdir()
    (out / "epoch-1" / "config.json").write_text("{}")
    store.persist(ref, out, "epoch-1", release=True)
    assert store.stored(ref, out, "epoch-1") == ["epoch-1/config.json"]


def _one_at_a_time(first: Store, second: Store) -> None:
    """While `first` holds a step, `second` waits; once `first` has committed, `second` finds it complete."""
    import threading
    import time

    ref = "prepare/00000000000000000042"
    events: list[str] = []
    with first.lock(ref):
        waiter = threading.Thread(target=lambda: _wait_then_note(second, ref, events))
        waiter.start()
        time.sleep(1.0)
        events.append("first commits")
        out = first.begin(ref)
        (out / "data.jsonl").write_text("{}\n")
        first.commit(ref, out, {"kind": "prepare", "summary": {}})
    waiter.join(timeout=60)
    assert events == ["first commits", "second holds it, complete: True"]


def _wait_then_note(store: Store, ref: str, events: list[str]) -> None:
    with store.lock(ref):
        events.append(f"second holds it, complete: {store.manifest(ref) is not None}")


def test_local_step_lock_is_one_execution_at_a_time(tmp_path):
    store = Store(str(tmp_path / "artifacts"), tmp_path / "work")
    _one_at_a_time(store, Store(str(tmp_path / "artifacts"), tmp_path / "other-work"))
    assert not list((tmp_path / "artifacts").rglob("*.lock")), "a completed step leaves no lock file"


def test_s3_lease_is_one_execution_at_a_time_with_a_conditional_put(tmp_path, s3_env, monkeypatch):
    from limit.execution.leases import S3Lease

    monkeypatch.setattr(S3Lease, "poll", 0.1)
    root = f"s3://{s3_env}/leases"
    _one_at_a_time(Store.open(root, tmp_path / "a"), Store.open(root, tmp_path / "b"))
    store = Store.open(root, tmp_path / "a")
    keys = [o["Key"] for o in store.s3.list_objects_v2(Bucket=s3_env).get("Contents", [])]
    assert not [k for k in keys if k.endswith(".lease")], "the lease is released"
    assert "leases/prepare/00000000000000000042/_manifest.json" in keys


def test_s3_lease_of_a_dead_execution_is_taken_over_once_expired(tmp_path, s3_env, monkeypatch):
    import json
    import time

    from limit.execution.leases import S3Lease

    monkeypatch.setattr(S3Lease, "poll", 0.1)
    store = Store.open(f"s3://{s3_env}/leases", tmp_path)
    ref = "judge/00000000000000000007"
    key = f"leases/{ref}.lease"
    dead = {"owner": "gone-pod:1:0", "expires": time.time() - 1}
    store.s3.put_object(Bucket=s3_env, Key=key, Body=json.dumps(dead).encode())
    with store.lock(ref) as lease:
        held = json.loads(store.s3.get_object(Bucket=s3_env, Key=key)["Body"].read())
        assert held["owner"] == lease.token != dead["owner"] and held["expires"] > time.time()
        # a second taker sees a live lease and waits: a put that is not conditional on its ETag never wins
        assert lease._put(IfNoneMatch="*") is None


class _Outage:
    """Puts to one key fail as an unreachable endpoint makes them fail, through botocore's own `before-send`
    hook on the store's real client (the request never leaves): `failures` left, or forever."""

    def __init__(self, store: Store, key: str, failures: float):
        self.key, self.failures = key, failures
        store.s3.meta.events.register("before-send.s3.PutObject", self._send)

    def _send(self, request, **kwargs):
        from botocore.exceptions import EndpointConnectionError

        if self.failures > 0 and request.url.split("?")[0].endswith(self.key):
            self.failures -= 1
            raise EndpointConnectionError(endpoint_url=request.url)
        return None


def _fast_leases(monkeypatch, seconds: float) -> None:
    from limit.execution.leases import S3Lease

    monkeypatch.setattr(S3Lease, "seconds", seconds)
    monkeypatch.setattr(S3Lease, "poll", 0.1)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's own retries would hide a single failure


def test_s3_lease_renewal_that_fails_once_and_recovers_keeps_the_lease(tmp_path, s3_env, monkeypatch):
    import json
    import time

    _fast_leases(monkeypatch, 3.0)  # renewed every 0.6 s
    store = Store.open(f"s3://{s3_env}/leases", tmp_path)
    ref = "judge/00000000000000000008"
    outage = _Outage(store, f"leases/{ref}.lease", failures=0)
    with store.lock(ref) as lease:
        outage.failures = 1
        time.sleep(2.0)  # a failed renewal, then two that succeed
        assert outage.failures == 0 and not lease.lost
        lease.check()
        body = store.s3.get_object(Bucket=s3_env, Key=f"leases/{ref}.lease")["Body"].read()
        assert json.loads(body)["expires"] > time.time() + 2.0, "renewed after the failure"
        out = store.begin(ref)
        (out / "x.json").write_text("{}")
        store.commit(ref, out, {"kind": "judge", "summary": {}})
    held = store.s3.list_objects_v2(Bucket=s3_env, Prefix=f"leases/{ref}").get("Contents", [])
    assert [o["Key"] for o in held] == [f"leases/{ref}/_manifest.json", f"leases/{ref}/x.json"]
    assert json.loads(store.read_text(ref, "x.json")) == {}


def test_s3_lease_renewal_failing_past_expiry_loses_it_and_the_taker_commits_once(tmp_path, s3_env, monkeypatch):
    import threading

    from limit.errors import UnavailableError

    _fast_leases(monkeypatch, 1.0)
    root, ref = f"s3://{s3_env}/leases", "judge/00000000000000000009"
    first, taker = Store.open(root, tmp_path / "a"), Store.open(root, tmp_path / "b")
    outage = _Outage(first, f"leases/{ref}.lease", failures=0)
    outcome: list[str] = []

    def take_over() -> None:
        with taker.lock(ref):
            out = taker.begin(ref)
            (out / "who.txt").write_text("taker")
            taker.commit(ref, out, {"kind": "judge", "summary": {"by": "taker"}})
            outcome.append("taker committed")

    with first.lock(ref) as lease:
        outage.failures = float("inf")  # from now on the first holder cannot reach its lease
        out = first.begin(ref)
        (out / "who.txt").write_text("first")
        thread = threading.Thread(target=take_over)
        thread.start()
        thread.join(timeout=30)
        assert lease.lost, "renewals failed past the expiry: the lease is lost"
        with pytest.raises(UnavailableError, match="lease"):
            first.commit(ref, out, {"kind": "judge", "summary": {"by": "first"}})
    assert outcome == ["taker committed"]
    assert first.manifest(ref)["summary"] == {"by": "taker"} and first.read_text(ref, "who.txt") == "taker"


def _commit_epoch(store: Store, ref: str, weights: bytes) -> None:
    out = store.begin(ref)
    (out / "epoch-1").mkdir(parents=True, exist_ok=True)
    (out / "epoch-1" / "model.safetensors").write_bytes(weights)
    (out / "scores.json").write_text('{"average": 0.25}')
    store.persist(ref, out, "epoch-1")
    store.commit(ref, out, {"kind": "finetune", "summary": {}})


def _zero_inside(path_bytes: bytes) -> bytes:
    return path_bytes[:100] + b"\x00" * 200 + path_bytes[300:]  # same size, other bytes


def test_manifest_records_each_files_size_and_sha256(tmp_path):
    import hashlib

    store = Store.open(str(tmp_path / "artifacts"), tmp_path)
    ref = "finetune/33333333333333333333"
    _commit_epoch(store, ref, b"\x01" * 1000)
    files = store.manifest(ref)["files"]
    assert files["epoch-1/model.safetensors"] == {"size": 1000, "sha256": hashlib.sha256(b"\x01" * 1000).hexdigest()}
    assert files["scores.json"]["size"] == len('{"average": 0.25}')


@pytest.mark.parametrize("where", ["local", "s3"])
def test_changed_bytes_of_the_same_size_make_the_step_not_done_and_a_rerun_redoes_it(tmp_path, where, request):
    store = _store(tmp_path, where, request)
    ref = "finetune/44444444444444444444"
    _commit_epoch(store, ref, b"\x01" * 1000)
    _overwrite(store, ref, "epoch-1/model.safetensors", _zero_inside(b"\x01" * 1000))
    with pytest.raises(LimitError, match=r"epoch-1/model.safetensors: sha256 differs .* marked not done"):
        store.fetch(ref, "epoch-1")
    assert store.manifest(ref) is None, "not done: the next run redoes it"
    _commit_epoch(store, ref, b"\x01" * 1000)  # the rerun
    assert (store.fetch(ref, "epoch-1") / "model.safetensors").read_bytes() == b"\x01" * 1000


@pytest.mark.parametrize("where", ["local", "s3"])
def test_an_edited_small_file_is_refused_where_it_is_read(tmp_path, where, request):
    store = _store(tmp_path, where, request)
    ref = "gauntlet/55555555555555555555"
    _commit_epoch(store, ref, b"\x01" * 1000)
    _overwrite(store, ref, "scores.json", b'{"average": 0.999}')
    with pytest.raises(LimitError, match=r"scores.json: 18 bytes, the manifest says 17"):
        store.read_text(ref, "scores.json")
    assert store.manifest(ref) is None


def _store(tmp_path, where: str, request) -> Store:
    if where == "local":
        return Store.open(str(tmp_path / "artifacts"), tmp_path)
    return Store.open(f"s3://{request.getfixturevalue('s3_env')}/v", tmp_path)


def _overwrite(store: Store, ref: str, name: str, body: bytes) -> None:
    """What a clumsy hand or a failing disk does to a completed step's file."""
    from pathlib import Path

    if store.root.startswith("s3://"):
        store.s3.put_object(Bucket=store.bucket, Key=store._key(ref, name), Body=body)
    else:
        (Path(store.root) / ref / name).write_bytes(body)


def test_an_empty_manifest_is_not_done_and_the_folder_is_replaced_by_the_next_commit(tmp_path, capsys):
    from pathlib import Path

    store = Store.open(str(tmp_path / "artifacts"), tmp_path)
    ref = "prepare/66666666666666666666"
    _commit_epoch(store, ref, b"\x02" * 500)
    (Path(store.root) / ref / MANIFEST).write_text("")  # a torn write
    assert store.manifest(ref) is None and store.manifest(ref) is None
    assert capsys.readouterr().err.count("unreadable (a torn write): the step is not done") == 1
    (Path(store.root) / ref / MANIFEST).unlink()  # or a manifest deleted beside its folder
    out = store.begin(ref)
    (out / "data.jsonl").write_text("{}\n")
    store.commit(ref, out, {"kind": "prepare", "summary": {"rows": 1}})
    assert store.manifest(ref)["summary"] == {"rows": 1}, "the new outputs, not the old folder"
    assert sorted(store.manifest(ref)["files"]) == ["data.jsonl"]
