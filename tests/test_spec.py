"""Study specs: shipped studies validate; bad input is one line naming file, line and field, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from limit.errors import LimitError
from limit.spec.study import STUDIES_DIR, list_studies, load_study

TINY = STUDIES_DIR / "tiny.yaml"


def test_shipped_studies_validate():
    assert {"tiny", "full", "paper-7b", "paper-30b"} <= set(list_studies())
    for name in list_studies():
        assert load_study(name).name == name


def test_full_is_the_papers_grid():
    full = load_study("full")
    runs = {(r.model, r.dataset) for r in full.runs}
    assert runs == {("mpt-7b", d) for d in ("instruct-v1", "instruct-v1-5k", "lima", "instruct-v1-5k+lima")} | {
        ("mpt-30b", d) for d in ("instruct-v3", "instruct-v3-1k", "lima", "instruct-v3-1k+lima")
    }
    assert full.baselines == ["mpt-7b", "mpt-30b"]
    t7 = full.train_spec(full.run("mpt-7b-lima"))
    assert (t7.optimizer, t7.lr, t7.betas, t7.global_batch_size, t7.max_seq_len) == (
        "decoupled_adamw",
        5e-6,
        (0.9, 0.99),
        48,
        2048,
    )
    t30 = full.train_spec(full.run("mpt-30b-lima"))
    assert (t30.optimizer, t30.lr, t30.betas, t30.global_batch_size, t30.max_seq_len) == (
        "decoupled_lionw",
        1e-6,
        (0.9, 0.95),
        72,
        8192,
    )
    for t in (t7, t30):
        assert (t.epochs, t.warmup_steps, t.grad_clip, t.precision, t.seed, t.weight_decay) == (
            10,
            50,
            1.0,
            "bf16",
            17,
            0.0,
        )
    # the authors' own subsets (paper appendix), not a seeded draw of ours
    assert full.datasets["instruct-v1-5k"].source.hf == "aditijha/instruct_v1_5k"
    assert full.datasets["instruct-v3-1k"].source.hf == "aditijha/instruct_v3_subset"
    assert full.datasets["instruct-v1"].source.hf == "mosaicml/dolly_hhrlhf"
    assert full.datasets["instruct-v3"].source.hf == "mosaicml/instruct-v3"
    assert full.datasets["lima"].source.hf == "GAIR/lima" and not full.datasets["lima"].source.templated
    assert len(full.pairs) == 12 and full.generation.seeds == [1, 2, 3] and full.generation.temperature == 0.9


def _broken(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(TINY.read_text())
    edit(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("edit", "field", "needle"),
    [
        (lambda d: d["runs"][0].update(dataset="limaa"), "runs.0.dataset", "limaa"),
        (lambda d: d["runs"][0].update(epochz=3), "runs.0.epochz", "epochz"),
        (lambda d: d["training"]["defaults"].update(lrr=1), "training.defaults.lrr", "lrr"),
        (lambda d: d["training"]["defaults"].update(lr=-1), "training.defaults.lr", "lr: -1"),
        (lambda d: d["runs"][1].update(train={"epochs": 0}), "runs.1.train.epochs", "epochs: 0"),
        (lambda d: d["pairs"][0].update(b="nobody"), "pairs.0.b", "nobody"),
        (
            lambda d: d["datasets"]["instruct-v1-24"]["subset"].update(of="nope"),
            "datasets.instruct-v1-24.subset.of",
            "nope",
        ),
        (lambda d: d["models"]["tiny-mpt"].update(hf="x/y"), "models.tiny-mpt", "tiny-mpt"),
    ],
)
def test_bad_spec_names_file_line_and_field(tmp_path, edit, field, needle):
    path = _broken(tmp_path, edit)
    with pytest.raises(LimitError) as err:
        load_study(str(path))
    message = str(err.value)
    assert message.startswith(str(path)) and f" {field}: " in message and "\n" not in message
    if needle:
        assert message.startswith(f"{path}:{_line_of(path, needle)}:")


def test_invalid_yaml_and_unknown_study(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodels: [unclosed\n")
    with pytest.raises(LimitError, match=r"bad.yaml:\d+: invalid YAML"):
        load_study(str(bad))
    with pytest.raises(LimitError, match="unknown study 'nope'"):
        load_study("nope")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "limit.cli", *args], capture_output=True, text=True)


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    path = _broken(tmp_path, lambda d: d["runs"][0].update(dataset="limaa"))
    for args in (["plan", str(path)], ["plan", "nope"], ["run", str(path), "--workdir", str(tmp_path / "w")]):
        result = _cli(*args)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("limit: error: ")
    assert not (tmp_path / "w" / "artifacts").exists()


def test_missing_dataset_file_and_oversized_subset_fail_at_plan_time(tmp_path):
    path = _broken(tmp_path, lambda d: d["datasets"]["lima"]["source"].update(jsonl=str(tmp_path / "none.jsonl")))
    result = _cli("plan", str(path))
    assert result.returncode == 2 and "datasets.lima.source.jsonl: file not found" in result.stderr
    path = _broken(tmp_path, lambda d: d["datasets"]["instruct-v1-24"]["subset"].update(sample=100000))
    result = _cli("plan", str(path))
    assert result.returncode == 2 and "datasets.instruct-v1-24.subset.sample" in result.stderr


def test_cli_lists_subcommands_and_studies():
    result = _cli("--help")
    for command in ("run", "plan", "step", "studies", "judge-pair", "gauntlet"):
        assert command in result.stdout
    studies = _cli("studies")
    assert studies.returncode == 0 and "tiny" in studies.stdout and "full" in studies.stdout


@pytest.mark.parametrize(
    "name",
    ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MLFLOW_TRACKING_TOKEN",
     "MLFLOW_TRACKING_PASSWORD", "ARGO_TOKEN", "aws_api_key", "PATH", "OPENAI_BASE_URL", "SECRET", "GITHUB_TOKEN",
     "VLLM_TOKEN", "AWS_API_KEY", "MLFLOW_API_KEY", "MINIO_API_KEY", "openai_api_key"],
)  # fmt: skip
def test_judge_key_env_refuses_the_platforms_credentials(tmp_path, name: str) -> None:
    """The spec picks base_url: a judge key naming the S3, hub or MLflow credential would be sent there."""
    path = _broken(tmp_path, lambda d: d["judge"].update(api_key_env=name, base_url="https://judge.example"))
    result = _cli("plan", str(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"{path}:{_line_of(path, 'api_key_env')}: judge.api_key_env: '{name}' is not a judge key" in result.stderr


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "TOGETHER_API_KEY", "VLLM_API_KEY", "MY_JUDGE_API_KEY"])
def test_judge_key_env_accepts_api_keys_and_tokens(tmp_path, name: str) -> None:
    path = _broken(tmp_path, lambda d: d["judge"].update(api_key_env=name))
    assert load_study(str(path)).judge.api_key_env == name
