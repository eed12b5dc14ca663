"""A model's own start and end of text: a Llama-like tokenizer's BOS starts every trained, generated and judged
text once, as lm-eval scores with it (none for MPT's or Qwen's); a chat template's end of turn stops sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers.processors import TemplateProcessing

from limit.data.chat import chat_prompt, end_of_turn
from limit.data.prompts import Prompt
from limit.generation.sampling import encode_prompts, until_stop
from limit.models.base import load_tokenizer, materialize_tiny, start_ids
from limit.spec.study import TinyModel
from limit.training.examples import IGNORE_INDEX, encode_chat, encode_example

TURN_END = "<|eot|>"
TEMPLATE = (  # Llama 3's shape: the BOS written by the template, each assistant turn closed by its own token
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}" + TURN_END + "{% else %}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return materialize_tiny(TinyModel(chat_template=True), tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def llama_like(folder):
    """The tiny tokenizer made to add a BOS of its own to every text, as Llama's and Mistral's do."""
    tokenizer = load_tokenizer(str(folder))
    tokenizer.add_special_tokens({"bos_token": "<|begin_of_text|>", "additional_special_tokens": [TURN_END]})
    bos = tokenizer.bos_token_id
    tokenizer._tokenizer.post_processor = TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)]
    )
    tokenizer.chat_template = TEMPLATE
    return tokenizer


def test_mpt_like_tokenizers_start_with_nothing(folder):
    tokenizer = load_tokenizer(str(folder))
    assert start_ids(tokenizer) == [] and end_of_turn(tokenizer) == []  # the tiny template ends turns with EOS
    example = encode_example(tokenizer, "Q: hi\n", "hello", 64)
    assert example["input_ids"][0] == tokenizer("Q", add_special_tokens=False)["input_ids"][0]


def test_a_bos_starts_the_trained_example_once_without_loss(llama_like):
    bos = llama_like.bos_token_id
    example = encode_example(llama_like, "Q: hi\n", "hello", 64)
    prompt = llama_like("Q: hi\n", add_special_tokens=False)["input_ids"]
    assert example["input_ids"][: len(prompt) + 1] == [bos, *prompt]
    assert example["labels"][: len(prompt) + 1] == [IGNORE_INDEX] * (len(prompt) + 1)
    assert example["input_ids"][-1] == llama_like.eos_token_id and example["labels"][-1] == llama_like.eos_token_id
    chat = encode_chat(llama_like, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], 64)
    assert chat["input_ids"].count(bos) == 1 and chat["input_ids"][0] == bos  # the template's own, not twice


def test_a_chat_template_without_a_bos_gets_the_tokenizers(llama_like):
    llama_like.chat_template = TEMPLATE.removeprefix("{{ bos_token }}")
    chat = encode_chat(llama_like, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], 64)
    assert chat["input_ids"][0] == llama_like.bos_token_id and chat["labels"][0] == IGNORE_INDEX
    assert chat["input_ids"].count(llama_like.bos_token_id) == 1


def test_generation_prompts_start_with_one_bos(llama_like):
    bos = llama_like.bos_token_id
    paper, chat = Prompt("0", "hi", "Q: hi\n"), Prompt("1", "hi", chat_prompt(llama_like, "hi"))
    encoded = encode_prompts(llama_like, [paper, chat])
    assert encoded[0] == [bos, *llama_like("Q: hi\n", add_special_tokens=False)["input_ids"]]
    assert encoded[1][0] == bos and encoded[1].count(bos) == 1


def test_sampling_stops_at_the_end_of_the_turn(llama_like):
    turn_end = llama_like.convert_tokens_to_ids(TURN_END)
    assert end_of_turn(llama_like) == [turn_end]
    stops = [llama_like.eos_token_id, turn_end]
    assert until_stop([5, 6, turn_end, 7, llama_like.eos_token_id], stops) == ([5, 6], "eos")
    assert until_stop([5, 6, 7], stops) == ([5, 6, 7], "length")
