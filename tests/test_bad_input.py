"""Bad input, table by table: every case is one line on stderr naming the file, line and field (or the flag),
exit code 2 (75 for a service that cannot be reached), never a traceback, and nothing written.

The commands run in this process through `limit.cli.main`: an exception that escaped it would fail the test
(it is what a user would see as a traceback).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import free_port, run_env

from limit.cli import main
from limit.spec.study import STUDIES_DIR

TINY = (STUDIES_DIR / "tiny.yaml").read_text()
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def edited(edit) -> str:
    data = yaml.safe_load(TINY)
    edit(data)
    return yaml.safe_dump(data, sort_keys=False)


def cli(*argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own refusals
        return e.code


def run_cli(capsys, *argv) -> tuple[int, str]:
    """The exit code and stderr, which must be one line without a traceback."""
    code = cli(*argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return code, err


def tiny_train(**values):
    return lambda d: d["training"]["defaults"].update(values)


def tiny_model(**values):
    return lambda d: d["models"]["tiny-mpt"]["tiny"].update(values)


# (case, the spec's text, the field named (with its line), what the message says)
SPEC_CASES = [
    ("negative d_model", edited(tiny_model(d_model=-64)), "models.tiny-mpt.tiny.d_model", "greater than 0"),
    ("heads not dividing d_model", edited(tiny_model(n_heads=3)), "models.tiny-mpt.tiny.n_heads", "do not divide"),
    ("vocabulary of 0", edited(tiny_model(vocab_size=0)), "models.tiny-mpt.tiny.vocab_size", "258"),
    ("beta of 1", edited(tiny_train(betas=[0.9, 1.0])), "training.defaults.betas.1", "less than 1"),
    ("negative beta", edited(tiny_train(betas=[-0.1, 0.9])), "training.defaults.betas.0", "greater than or equal"),
    ("infinite lr", TINY.replace("lr: 1.0e-3", "lr: .inf"), "training.defaults.lr", "finite"),
    ("NaN eps", TINY.replace("lr: 1.0e-3", "lr: 1.0e-3\n    eps: .nan"), "training.defaults.eps", "finite"),
    ("1e23 epochs", TINY.replace("epochs: 2", "epochs: 1e23"), "training.defaults.epochs", "integer"),
    ("1.0e+23 epochs", TINY.replace("epochs: 2", "epochs: 1.0e+23"), "training.defaults.epochs", "integer"),
    ("100000 epochs", TINY.replace("epochs: 2", "epochs: 100000"), "training.defaults.epochs", "1000"),
    ("negative seed", edited(tiny_train(seed=-1)), "training.defaults.seed", "greater than or equal to 0"),
    ("seed over 2^32", edited(tiny_train(seed=2**40)), "training.defaults.seed", "4294967295"),
    ("huge max_seq_len", edited(tiny_train(max_seq_len=10**9)), "training.defaults.max_seq_len", "less than"),
    ("CPU processes in bf16", edited(tiny_train(cpu_processes=2, precision="bf16")), "training.defaults",
     "cpu_processes: bf16 needs CUDA"),
    ("CPU processes with flex", edited(tiny_train(cpu_processes=2, attention="flex")), "training.defaults",
     "flex attention has no CPU backward"),
    ("CPU processes and GPUs", edited(tiny_train(cpu_processes=2, gpus=2)), "training.defaults",
     "cpu_processes stands in for GPUs"),
    ("batch over CPU processes", edited(tiny_train(cpu_processes=3)), "training.defaults",
     "micro_batch_size x cpu_processes = 12"),
    (
        "seed given twice",
        edited(lambda d: d["generation"].update(seeds=[1, 1])),
        "generation.seeds",
        "seed 1 is given twice",
    ),
    ("memory: lots", edited(lambda d: d["resources"]["finetune"].update(memory="lots")), "resources.finetune.memory",
     "not a Kubernetes quantity"),
    ("cpu: -4", edited(lambda d: d["resources"]["finetune"].update(cpu=-4)), "resources.finetune.cpu",
     "greater than 0"),
    ("key given twice", TINY.replace("  epochs: 2\n", "  epochs: 2\n    epochs: 3\n"), "training.defaults.epochs",
     "key given twice (first on line"),
    (
        "run names one slug apart",
        edited(lambda d: d["runs"].append({"name": "tiny_lima", "model": "tiny-mpt", "dataset": "instruct-v1"})),
        "runs.2.name",
        "'tiny_lima' and 'tiny-lima' (runs.0.name) both become 'tiny-lima'",
    ),
    (
        "prompt set without a letter",
        edited(lambda d: (d["prompts"].update({"__": d["prompts"]["tiny-test"]}), d["pairs"][0].update(prompts="__"))),
        "prompts.__",
        "no letter or digit",
    ),
    ("judge key a GitHub token", edited(lambda d: d["judge"].update(api_key_env="GITHUB_TOKEN")),
     "judge.api_key_env", "'GITHUB_TOKEN' is not a judge key"),
    ("judge key MLflow's", edited(lambda d: d["judge"].update(api_key_env="MLFLOW_TRACKING_API_KEY")),
     "judge.api_key_env", "is not a judge key"),
    ("base_url not a URL", edited(lambda d: d["judge"].update(base_url="not a url")), "judge.base_url",
     "'not a url' is not an http(s) URL with a host"),
    ("base_url a file URL", edited(lambda d: d["judge"].update(base_url="file:///etc/passwd")), "judge.base_url",
     "is not an http(s) URL with a host"),
    ("base_url without a host", edited(lambda d: d["judge"].update(base_url="https:///v1")), "judge.base_url",
     "is not an http(s) URL with a host"),
    ("study name of 58 characters", edited(lambda d: d.update(name="s" * 58)), "name", "at most 50 characters"),
    ("run name of 300 characters", edited(lambda d: (d["runs"][0].update(name="r" * 300),
     d["pairs"][0].update(a="r" * 300))), "runs.0.name", "is 300 characters: at most 60"),
    ("epochs: true", TINY.replace("epochs: 2", "epochs: true"), "training.defaults.epochs", "valid integer"),
    ("cpu: 1e300", edited(lambda d: d["resources"]["finetune"].update(cpu=1e300)), "resources.finetune.cpu",
     "less than or equal to 4096"),
    ("tiny model of 65536 x 1024 layers", edited(tiny_model(d_model=65536, n_layers=1024)),
     "models.tiny-mpt.tiny.d_model", "parameters is not tiny"),
    ("gauntlet fixture climbing out", edited(lambda d: d["gauntlet"].update(data="fixture:../../..")),
     "gauntlet.data", "not inside the packaged fixtures"),
    ("prompts fixture climbing out", edited(lambda d: d["prompts"]["tiny-test"].update(jsonl="fixture:../cli.py")),
     None, "prompts.tiny-test.jsonl: fixture:../cli.py: not inside the packaged fixtures"),
    ("alias bomb", TINY + BOMB, None, "aliases expand it by"),
    ("recursive alias", TINY + "x: &x [1, *x]\n", None, "refers to its own anchor"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "field", "message"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES])
def test_a_bad_spec_is_one_line_naming_file_line_and_field(tmp_path, capsys, text, field, message):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    code, err = run_cli(capsys, "plan", path)
    assert code == 2 and message in err, err
    if field:
        assert f" {field}: " in err and err.startswith(f"limit: error: {path}:"), err
        line = int(err.split(f"{path}:")[1].split(":")[0])
        key = field.split(".")[-1]
        assert key in text.splitlines()[line - 1] or field.startswith("runs."), (line, err)


def test_the_alias_bomb_is_refused_before_it_is_expanded(tmp_path, capsys):
    import resource

    path = tmp_path / "bomb.yaml"
    path.write_text(TINY + BOMB)  # 9^9 scalars once expanded: gigabytes
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, err = run_cli(capsys, "plan", path)
    assert code == 2 and "aliases expand it" in err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing was expanded


def test_aliases_and_merge_keys_within_the_limit_are_fine(tmp_path, capsys):
    text = TINY.replace("training:\n  defaults:\n", "training:\n  defaults: &defaults\n")
    text = text.replace("runs:\n", "  models:\n    tiny-mpt:\n      <<: *defaults\n      epochs: 1\nruns:\n", 1)
    path = tmp_path / "aliases.yaml"
    path.write_text(text)
    assert cli("plan", path, "--json") == 0
    capsys.readouterr()


def test_a_plan_over_max_steps_needs_the_flag(capsys):
    code, err = run_cli(capsys, "plan", "tiny", "--max-steps", "5")
    assert code == 2 and "the study plans up to 19 steps, more than 5" in err and "--max-steps 19" in err
    assert cli("plan", "tiny", "--json", "--max-steps", "19") == 0
    assert len(json.loads(capsys.readouterr().out)["steps"]) == 19  # with the two contamination checks


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    (tmp_path / "latin1.yaml").write_bytes("name: café\n".encode("latin-1"))
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "a-file").write_text("hello\n")
    (tmp_path / "a-folder").mkdir()
    pairs = [{"instruction": "Say hi.", "output": "hi"}]
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    return {p.name: p for p in tmp_path.iterdir()}


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# (case, argv with {file} placeholders, exit code, what stderr says)
CLI_CASES = [
    ("binary spec", ["plan", "{binary.yaml}"], 2, "binary.yaml: not UTF-8 text"),
    ("Latin-1 spec", ["run", "{latin1.yaml}"], 2, "latin1.yaml: not UTF-8 text"),
    ("binary profile", ["manifest", "tiny", "--profile", "{binary.yaml}"], 2, "binary.yaml: not UTF-8 text"),
    ("Latin-1 JSON pairs", ["judge-pair", "--a", "{latin1.yaml}", "--b", "{pairs.json}", "--out", "{o.json}"], 2,
     "--a: "),
    ("gauntlet, missing model", ["gauntlet", "--model", "{missing}/model", "--suite", "tiny"], 2,
     "--model: ", "no such folder"),
    ("gauntlet, empty folder", ["gauntlet", "--model", "{empty-folder}", "--suite", "tiny"], 2, "no config.json"),
    ("gauntlet, a file", ["gauntlet", "--model", "{a-file}", "--suite", "tiny"], 2, "is a file"),
    ("gauntlet, --out a folder", ["gauntlet", "--model", "x/y", "--out", "{a-folder}"], 2, "--out: ", "is a folder"),
    ("gauntlet --batch-size 0", ["gauntlet", "--model", "x/y", "--batch-size", "0"], 2, "--batch-size: "),
    ("gauntlet --limit -1", ["gauntlet", "--model", "x/y", "--limit", "-1"], 2, "--limit: "),
    ("judge-pair, local model missing", ["judge-pair", "--a", "{pairs.json}", "--b", "{pairs.json}", "--out",
     "{o.json}", "--backend", "local", "--local-model", "/nonexistent"], 2, "--local-model: /nonexistent: no such"),
    ("judge-pair, --out a folder", ["judge-pair", "--a", "{pairs.json}", "--b", "{pairs.json}", "--out",
     "{a-folder}"], 2, "--out: "),
    ("judge-pair --concurrency 0", ["judge-pair", "--a", "{pairs.json}", "--b", "{pairs.json}", "--out", "{o.json}",
     "--concurrency", "0"], 2, "--concurrency: "),
    ("judge-pair --bootstrap -5", ["judge-pair", "--a", "{pairs.json}", "--b", "{pairs.json}", "--out", "{o.json}",
     "--bootstrap", "-5"], 2, "--bootstrap: "),
    ("judge-pair --max-retries -1", ["judge-pair", "--a", "{pairs.json}", "--b", "{pairs.json}", "--out",
     "{o.json}", "--max-retries", "-1"], 2, "--max-retries: "),
    ("judge-pair --retry-wait inf", ["judge-pair", "--a", "{pairs.json}", "--b", "{pairs.json}", "--out",
     "{o.json}", "--retry-wait", "inf"], 2, "--retry-wait: "),
    ("judge-pair --seed -1", ["judge-pair", "--a", "{pairs.json}", "--b", "{pairs.json}", "--out", "{o.json}",
     "--seed", "-1"], 2, "argument --seed: -1 is not in"),
    ("run --jobs 0", ["run", "tiny", "--jobs", "0"], 2, "argument --jobs: 0 is not in"),
    ("plan --max-steps x", ["plan", "tiny", "--max-steps", "x"], 2, "'x' is not an integer"),
    ("unknown flag", ["plan", "tiny", "--nope"], 2, "unrecognized arguments: --nope"),
    ("report --out a file", ["report", "tiny", "--out", "{a-file}"], 2, "--out: ", "is a file"),
    ("report, a mistyped --workdir", ["report", "tiny", "--workdir", "{missing}"], 2,
     "none of its steps is complete in"),
    ("export --csv a folder", ["export", "tiny", "--csv", "{a-folder}"], 2, "--csv: ", "is a folder"),
    ("manifest --out a folder", ["manifest", "tiny", "--out", "{a-folder}"], 2, "--out: ", "is a folder"),
    ("run --timings a folder", ["run", "tiny", "--timings", "{a-folder}"], 2, "--timings: ", "is a folder"),
    ("gauntlet-convert --out a file", ["gauntlet-convert", "--out", "{a-file}"], 2, "--out: "),
    ("gauntlet-convert, unknown benchmark", ["gauntlet-convert", "nope", "--out", "{o}"], 2, "no converter for"),
]  # fmt: skip


def fill(argv: list[str], files: dict[str, Path], tmp_path: Path) -> list[str]:
    out = []
    for arg in argv:
        for name in [*files, "o.json", "o", "missing"]:
            arg = arg.replace("{" + name + "}", str(files.get(name, tmp_path / name)))
        out.append(arg)
    return out


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_a_bad_flag_or_path_is_one_line(case, files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LIMIT_WORKDIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    argv, code, *messages = case[1:]
    got, err = run_cli(capsys, *fill(argv, files, tmp_path))
    assert got == code and all(m in err for m in messages), err
    assert not (tmp_path / "o.json").exists() and not (tmp_path / "runs" / "artifacts").exists()


def test_unreachable_services_exit_75(tmp_path, capsys, monkeypatch):
    """Argo, S3 and the hub, each unreachable: one line, exit 75 (the workflow retries those)."""
    monkeypatch.setenv("ARGO_SERVER", closed_port_url())
    code, err = run_cli(capsys, "submit", "tiny", "--profile", "kind")
    assert code == 75 and "cannot reach the Argo server" in err, err

    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_port_url())
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    code, err = run_cli(capsys, "run", "tiny", "--workdir", tmp_path / "runs", "--artifacts", "s3://bucket/x")
    assert code == 75 and "s3://bucket/x: EndpointConnectionError" in err, err


def test_gauntlet_convert_with_the_hub_unreachable_exits_75(tmp_path):
    """In a subprocess: huggingface_hub reads its endpoint when imported."""
    env = run_env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_DATASETS_CACHE=str(tmp_path / "datasets"))
    result = subprocess.run(
        [sys.executable, "-m", "limit.cli", "gauntlet-convert", "squad", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 75, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0 and "rajpurkar/squad" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.jsonl"))


def one_run_study(tmp_path: Path, name: str, model: dict, dataset: dict) -> Path:
    """A study of one finetune, no baselines or pairs: its first step (prepare) is where it fails."""
    data = yaml.safe_load(TINY)
    data |= {"name": name, "models": {"m": model}, "datasets": {"d": dataset}, "baselines": [], "pairs": []}
    data["runs"] = [{"name": "r", "model": "m", "dataset": "d"}]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_limit_run_exits_as_its_failed_step_did(tmp_path: Path):
    """2 when a step failed on bad input (here rows without the named field), 75 when it could not reach a
    service (here the hub, for the stats tokenizer)."""
    rows, good = tmp_path / "rows.jsonl", tmp_path / "good.jsonl"
    rows.write_text('{"question": "q", "answer": "a"}\n')
    good.write_text('{"prompt": "q", "response": "a"}\n')
    tiny = yaml.safe_load(TINY)["models"]["tiny-mpt"]
    bad_rows = one_run_study(tmp_path, "bad-rows", tiny, {"source": {"jsonl": str(rows)}})
    no_hub = one_run_study(tmp_path, "no-hub", {"hf": "limit-tests/absent"}, {"source": {"jsonl": str(good)}})
    env = run_env(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    for study, code in ((bad_rows, 2), (no_hub, 75)):
        workdir = tmp_path / study.stem
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
        argv = [sys.executable, "-m", "limit.cli", "run", str(study), "--workdir", str(workdir)]
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == code, result.stdout[-3000:] + result.stderr[-2000:]
        assert "FAIL   prepare-d" in result.stdout and not list(workdir.rglob("_manifest.json"))


@pytest.mark.parametrize("char", ["?", "%", "#"])
def test_a_workdir_that_would_break_the_sqlite_uri_is_one_line(tmp_path, capsys, monkeypatch, char):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workdir = tmp_path / f"runs{char}x"
    code, err = run_cli(capsys, "run", "tiny", "--workdir", workdir)
    assert code == 2 and "--workdir: " in err and "sqlite URI" in err, err
    assert not workdir.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"path": "{empty}"}, "models.tiny-mpt.path: {empty}: no config.json in the folder"),
        ({"path": "{typeless}"}, "models.tiny-mpt.path: {typeless}/config.json: no model_type"),
        ({"path": "{missing}"}, "models.tiny-mpt.path: {missing}: no such folder"),
        ({"hf": "../models/mpt"}, "models.tiny-mpt.hf: '../models/mpt' is not a hub id"),
        ({"hf": "/abs/mpt"}, "models.tiny-mpt.hf: '/abs/mpt' is not a hub id"),
        ({"hf": "org/../../x"}, "is not a hub id"),
    ],
    ids=["empty folder", "config without model_type", "no such folder", "hf: ../", "hf: absolute", "hf: org/.."],
)
def test_a_model_no_step_could_load_is_refused_at_plan_time(tmp_path, capsys, model, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "typeless").mkdir()
    (tmp_path / "typeless" / "config.json").write_text('{"d_model": 64}')
    names = {"{empty}": tmp_path / "empty", "{typeless}": tmp_path / "typeless", "{missing}": tmp_path / "nope"}
    model = {k: str(names.get(v, v)) for k, v in model.items()}
    for placeholder, value in names.items():
        message = message.replace(placeholder, str(value))
    path = tmp_path / "study.yaml"
    path.write_text(edited(lambda d: d["models"].update({"tiny-mpt": model})))
    code, err = run_cli(capsys, "plan", path)
    assert code == 2 and message in err, err
