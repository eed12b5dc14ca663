"""The vllm backends (gauntlet.backend, generation.backend) take only what the pinned vLLM runs for us: MPT.
Anything else ends in one line naming the field, the architecture and the vLLM version, before vLLM starts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from limit.errors import LimitError
from limit.gauntlet.evaluate import load_model
from limit.generation.sampling import VLLMSampler
from limit.models.base import materialize_tiny
from limit.models.vllm import ARCHITECTURES, require_supported, vllm_version
from limit.spec.study import GauntletSpec, TinyModel


@pytest.fixture(scope="module")
def tiny_mpt(tmp_path_factory) -> str:
    return str(materialize_tiny(TinyModel(d_model=32, n_layers=1, n_heads=2), tmp_path_factory.mktemp("work")))


@pytest.fixture
def llama_dir(tmp_path: Path) -> str:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    return str(tmp_path)


def test_tiny_mpt_is_an_architecture_vllm_runs(tiny_mpt: str) -> None:
    assert json.loads((Path(tiny_mpt) / "config.json").read_text())["architectures"][0] in ARCHITECTURES
    require_supported(tiny_mpt, "gauntlet.backend")


def test_other_architectures_fail_in_one_line_before_vllm_is_built(llama_dir: str) -> None:
    for field, start in (
        ("gauntlet.backend", lambda: load_model(llama_dir, GauntletSpec(backend="vllm"))),
        ("generation.backend", lambda: VLLMSampler(llama_dir)),
    ):
        with pytest.raises(LimitError) as e:
            start()
        message = str(e.value)
        assert message.startswith(f"{field}: vllm ") and "LlamaForCausalLM" in message, message
        assert "\n" not in message


def test_the_message_names_the_installed_or_pinned_vllm(llama_dir: str) -> None:
    with pytest.raises(LimitError, match=rf"vllm {re.escape(vllm_version())} is not used for LlamaForCausalLM"):
        require_supported(llama_dir, "generation.backend")


def test_a_config_without_architectures_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(LimitError, match="no architectures in config.json"):
        require_supported(str(tmp_path), "gauntlet.backend")


def test_the_gauntlet_asks_vllm_for_prefix_caching(tiny_mpt: str, monkeypatch) -> None:
    """vLLM is not installed here: lm-eval's VLLM module is stood in for by a recorder of the engine arguments."""
    import sys
    import types

    seen = {}
    recorder = types.SimpleNamespace(VLLM=lambda **kwargs: seen.update(kwargs) or "vllm")
    monkeypatch.setitem(sys.modules, "lm_eval.models.vllm_causallms", recorder)
    assert load_model(tiny_mpt, GauntletSpec(backend="vllm", batch_size=4)) == "vllm"
    assert seen["enable_prefix_caching"] is True and seen["pretrained"] == tiny_mpt
