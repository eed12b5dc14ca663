"""Base models: a hub id, a local folder, or a tiny model the project builds itself (no hub needed).

`model_location` turns a `ModelSpec` into something `from_pretrained` accepts. A tiny model is
materialised once per config into the work folder: a byte-level BPE tokenizer trained with `tokenizers`
on the text of the packaged fixtures, and the family's transformers class (`MptForCausalLM` by default,
limit/models/families.py) with seeded random weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from limit.errors import LimitError, UnavailableError, is_transient
from limit.execution.locations import FIXTURES
from limit.models.families import tiny_config
from limit.spec.study import ModelSpec, TinyModel

EOS = "<|endoftext|>"
PAD = "<|padding|>"
# The tiny tokenizer's chat template (`tiny: {chat_template: true}`): role tags, each assistant turn ended by
# EOS, so that generation stops where a turn does. Turns meet at a newline or a special token, where the
# byte-level pre-tokenizer splits anyway: the conversation tokenized whole and turn by turn is the same ids.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}" + EOS + "{% else %}{{ '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# What the tiny tokenizer is trained on: these fixtures only, so that a fixture added later (the chat
# fixture) changes no tiny model's tokenizer, nor the training numbers pinned in the tests.
CORPUS_FOLDERS = ("gauntlet", "tiny")


@dataclass(frozen=True)
class Pretrained:
    """A model as `from_pretrained` takes it: where, at which hub revision, and whether its code is trusted."""

    location: str
    revision: str | None = None
    trust_remote_code: bool = False

    @staticmethod
    def of(model: Pretrained | str) -> Pretrained:
        return model if isinstance(model, Pretrained) else Pretrained(model)


def model_location(spec: ModelSpec, workdir: Path) -> str:
    if spec.tiny is not None:
        return str(materialize_tiny(spec.tiny, workdir))
    return spec.path or spec.hf


def tokenizer_location(spec: ModelSpec, workdir: Path) -> str:
    return spec.tokenizer or model_location(spec, workdir)


def context_length(config) -> int | None:
    """The longest sequence a model's config says it takes (MPT: max_seq_len), or None if it says none."""
    for name in ("max_seq_len", "max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_location(location: str, what: str) -> str:
    """`location` if it can be a model: a folder with a config.json, or a hub id ("name" or "org/name").

    A path that names nothing, a file or a folder without config.json is refused in one line naming `what`
    (the flag or field), before anything is loaded.
    """
    path = Path(location).expanduser()
    if path.is_file():
        raise LimitError(f"{what}: {location} is a file: give a model folder (with config.json) or a hub id")
    if path.is_dir() and not (path / "config.json").is_file():
        raise LimitError(f"{what}: {location}: no config.json in the folder: not a saved model")
    if not path.exists() and (location.startswith(("/", ".", "~")) or location.count("/") > 1):
        raise LimitError(f"{what}: {location}: no such folder")
    return location


@contextlib.contextmanager
def loading(location: str) -> Iterator[None]:
    """Loading a model or tokenizer: what transformers raises becomes one line, exit 75 if the hub was away."""
    try:
        yield
    except OSError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise (UnavailableError if is_transient(e) else LimitError)(f"{location}: cannot load: {reason}") from None


def start_ids(tokenizer) -> list[int]:
    """What the tokenizer puts before a text by default: a Llama's or Mistral's BOS, nothing for MPT's or Qwen's.
    lm-eval scores the gauntlet with it (its default `add_special_tokens`), so training, generation and the
    local judge start every text the same way; a chat template that writes the BOS itself needs none added."""
    ids = tokenizer("", add_special_tokens=True)["input_ids"]
    return ids[:1] if ids and ids[0] == tokenizer.bos_token_id else []


def with_start(tokenizer, ids: list[int]) -> list[int]:
    """`ids` behind the tokenizer's start (`start_ids`), unless they begin with it already."""
    start = start_ids(tokenizer)
    return ids if ids[: len(start)] == start else start + ids


def load_tokenizer(location: str, revision: str | None = None):
    from transformers import AutoTokenizer

    with loading(location):
        tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
    if tokenizer.pad_token is None:  # MPT's GPT-NeoX tokenizer has none
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _corpus_files() -> list[Path]:
    files = [p for folder in CORPUS_FOLDERS for p in (FIXTURES / folder).rglob("*")]
    return sorted(p for p in files if p.suffix in (".jsonl", ".txt") and p.is_file())


def _texts(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from _texts(v)


def corpus() -> Iterator[str]:
    """Every string in the packaged fixtures: what the tiny tokenizer is trained on."""
    for path in _corpus_files():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                yield from _texts(json.loads(line))
            else:
                yield line


def materialize_tiny(cfg: TinyModel, workdir: Path) -> Path:
    """Build (once) and return the folder of a tiny model with its tokenizer, in HF format."""
    digest = hashlib.sha256(cfg.model_dump_json().encode())
    for path in _corpus_files():
        digest.update(path.read_bytes())
    target = Path(workdir) / "models" / f"tiny-{cfg.arch}-{digest.hexdigest()[:16]}"
    if (target / "config.json").is_file():
        return target

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, pad_token=PAD, bos_token=EOS)
    tokenizer.model_max_length = cfg.max_seq_len
    if cfg.chat_template:
        tokenizer.chat_template = TINY_CHAT_TEMPLATE

    torch.manual_seed(cfg.seed)
    special = {
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    model = AutoModelForCausalLM.from_config(tiny_config(cfg, len(tokenizer), special))

    staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)
    except OSError:  # another process materialised the same model first
        shutil.rmtree(staging, ignore_errors=True)
    return target
