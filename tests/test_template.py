"""The instruction template, and label masking: loss on response tokens only, EOS appended, truncation."""

from __future__ import annotations

import pytest

from limit.data.template import apply_template, is_templated
from limit.models.base import load_tokenizer, materialize_tiny
from limit.spec.study import TinyModel
from limit.training.examples import IGNORE_INDEX, encode_example


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(str(materialize_tiny(TinyModel(), tmp_path_factory.mktemp("work"))))


def test_template_is_the_papers():
    assert apply_template("Name a colour.") == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the "
        "request.\n\n### Instruction:\nName a colour.\n\n### Response:\n"
    )
    assert is_templated(apply_template("x"))
    assert not is_templated("Name a colour.")


def test_prompt_positions_are_masked_and_eos_appended(tokenizer):
    prompt, response = apply_template("Name a colour."), "Blue."
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]

    example = encode_example(tokenizer, prompt, response, max_seq_len=256)

    assert example["input_ids"] == prompt_ids + response_ids + [tokenizer.eos_token_id]
    assert example["labels"][: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert example["labels"][len(prompt_ids) :] == response_ids + [tokenizer.eos_token_id]
    assert example["attention_mask"] == [1] * len(example["input_ids"])


def test_truncation_keeps_the_start(tokenizer):
    prompt, response = apply_template("Tell a long story."), "Once upon a time " * 20
    full = encode_example(tokenizer, prompt, response, max_seq_len=10_000)
    n_prompt = full["labels"].count(IGNORE_INDEX)

    cut = encode_example(tokenizer, prompt, response, max_seq_len=n_prompt + 3)

    assert cut["input_ids"] == full["input_ids"][: n_prompt + 3]
    assert cut["labels"] == full["labels"][: n_prompt + 3]
    assert cut["labels"][-1] != tokenizer.eos_token_id  # the end (EOS included) is what is cut


def test_prompt_longer_than_max_seq_len_gives_no_example(tokenizer):
    prompt = apply_template("word " * 100)
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert encode_example(tokenizer, prompt, "ok", max_seq_len=n_prompt) is None
    assert encode_example(tokenizer, prompt, "ok", max_seq_len=n_prompt + 1) is not None
