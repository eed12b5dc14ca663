"""The planner on the RoPE families: their configs are read for memory and FLOPs (grouped-query attention, gated
MLP, tied or untied embeddings), the tiny builders' parameter counts are the planner's, other families are
refused in one line, and `modern` plans with memory per GPU and GPU-hours per finetune and refuses what
cannot fit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_env

from limit.costs import KNOWN_CONFIGS, KNOWN_SHAPES, model_shape, shape_of, tiny_shape
from limit.errors import LimitError
from limit.models.base import materialize_tiny
from limit.plan import build_plan
from limit.spec.study import ModelSpec, TinyModel, load_study


def limit_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "limit.cli", *args], capture_output=True, text=True, env=run_env())


def test_known_bases_have_their_published_parameter_counts():
    published = {  # the model cards' counts
        "meta-llama/Llama-3.1-8B": 8.03e9,
        "Qwen/Qwen3-8B-Base": 8.19e9,
        "Qwen/Qwen2.5-7B": 7.62e9,
        "mistralai/Mistral-7B-v0.3": 7.25e9,
        "mosaicml/mpt-7b": 6.65e9,
    }
    for name, params in published.items():
        assert KNOWN_SHAPES[name].params == pytest.approx(params, rel=3e-3), name
    llama = KNOWN_SHAPES["meta-llama/Llama-3.1-8B"]
    assert llama.kv_dim == 1024 and llama.gated and not llama.tied and llama.family == "llama"


@pytest.mark.parametrize(
    "tiny",
    [
        TinyModel(),
        TinyModel(arch="llama", n_kv_heads=2),
        TinyModel(arch="qwen2", n_kv_heads=1, intermediate_size=96),
        TinyModel(arch="qwen3", n_kv_heads=2, tie_embeddings=False),
        TinyModel(arch="mistral"),
    ],
    ids=lambda t: t.arch,
)
def test_the_planner_counts_the_tiny_models_parameters(tiny, tmp_path: Path):
    """The planner's count from the spec equals the built model's, and its shape from the saved config.json."""
    folder = materialize_tiny(tiny, tmp_path)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.model_type == tiny.arch
    assert sum(p.numel() for p in model.parameters()) == tiny_shape(tiny).params
    assert model_shape(ModelSpec(path=str(folder))) == tiny_shape(tiny)


def test_an_unsupported_family_is_refused_in_one_line(tmp_path: Path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 768}))
    with pytest.raises(LimitError) as caught:
        model_shape(ModelSpec(path=str(tmp_path)), "models.gpt")
    message = str(caught.value)
    assert message == (
        f"models.gpt ({tmp_path}): model_type 'gpt2' is not a supported family "
        "(supported: mpt, llama, mistral, qwen2, qwen3)"
    )
    incomplete = {k: v for k, v in KNOWN_CONFIGS["meta-llama/Llama-3.1-8B"].items() if k != "num_hidden_layers"}
    with pytest.raises(LimitError, match="config.json of a llama model has no num_hidden_layers"):
        shape_of(incomplete, "x")


def test_modern_summary_prints_memory_per_gpu_and_gpu_hours_per_finetune():
    result = limit_cli("plan", "modern", "--summary")
    assert result.returncode == 0, result.stderr
    plan = build_plan(load_study("modern"))
    for model in ("llama-3.1-8b", "qwen3-8b"):
        (line,) = [x for x in result.stdout.splitlines() if x.strip().startswith(f"finetunes of {model}:")]
        steps = [s for s in plan.by_kind("finetune") if s.input.tags["model"] == model]
        memory = max(plan.costs[s.id].memory.gib for s in steps)
        assert f"~{memory:,.1f} GiB per GPU (of 80)" in line and memory < 80
        for step in steps:
            run = step.input.tags["run"].removeprefix(f"{model}-")
            assert f" {run} ~{plan.costs[step.id].gpu_hours:,.1f}" in line
        (methods,) = [x for x in result.stdout.splitlines() if x.strip().startswith(f"{model}: full ")]
        assert "GiB/GPU" in methods and " | lora " in methods  # full and LoRA side by side
    assert "judge: gpt-4-0613, 17,100 calls" in result.stdout


def test_modern_refuses_a_variant_that_cannot_fit(tmp_path: Path):
    spec = yaml.safe_load((REPO / "workflows" / "studies" / "modern.yaml").read_text())
    spec["training"]["defaults"] |= {"micro_batch_size": 6, "gradient_checkpointing": False}
    path = tmp_path / "modern-variant.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = limit_cli("plan", str(path), "--summary")
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert f"{path}: runs.0 (llama-3.1-8b-lima): the finetune needs ~" in line and "over the 80 GiB per GPU" in line


def test_a_tiny_mpt_is_as_it_was_and_takes_no_rope_fields():
    assert TinyModel().model_dump() == {
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "max_seq_len": 512,
        "vocab_size": 1024,
        "seed": 0,
    }
    with pytest.raises(ValueError, match="shapes the RoPE families only"):
        TinyModel(n_kv_heads=2)
    with pytest.raises(ValueError, match="3 key/value heads do not divide n_heads 4"):
        TinyModel(arch="llama", n_kv_heads=3)


def test_a_bad_tiny_field_is_one_line_naming_it(tmp_path: Path):
    spec = yaml.safe_load((REPO / "workflows" / "studies" / "tiny-modern.yaml").read_text())
    spec["models"]["tiny-qwen"]["tiny"]["n_kv_heads"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = limit_cli("plan", str(path))
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "models.tiny-qwen.tiny.n_kv_heads: 3 key/value heads do not divide n_heads 4" in line


def test_flash_attention_is_refused_for_an_mpt_at_plan_time(tmp_path: Path):
    spec = yaml.safe_load((REPO / "workflows" / "studies" / "tiny.yaml").read_text())
    spec["training"]["defaults"]["attention"] = "flash"
    path = tmp_path / "tiny-flash.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(LimitError, match=r"runs.0 \(tiny-lima\): attention flash is for the RoPE families"):
        build_plan(load_study(str(path)))
