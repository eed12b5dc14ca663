"""Chat-format data and templates: a messages-format fixture (multi-turn) prepared under the paper's template
and the chat template, the loss on the assistant's turns only (labels checked token by token against the
template's rendering), generation's prompts rendered alike, and `chat` refused where no template exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_bad_input import edited, run_cli

from limit.data.chat import chat_prompt, render, require_chat_template
from limit.data.datasets import load_source
from limit.data.template import apply_template
from limit.errors import LimitError
from limit.spec.study import Source, TinyModel
from limit.training.examples import IGNORE_INDEX, encode_chat

FIXTURE = "fixture:chat/messages.jsonl"


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory):
    from limit.models.base import load_tokenizer, materialize_tiny

    return load_tokenizer(str(materialize_tiny(TinyModel(chat_template=True), tmp_path_factory.mktemp("tiny"))))


def test_a_messages_dataset_prepared_under_both_templates():
    paper, dropped = load_source(Source(jsonl=FIXTURE, messages="messages", turns="first"))
    assert len(paper) == 36 and dropped == 1  # the one row no assistant answers
    assert paper[1] == {
        "prompt": apply_template("What is the moon?"),
        "response": "The Moon is Earth's only natural satellite; it always shows the same face to us.",
        "source": FIXTURE,
    }
    assert all(row["prompt"].startswith(apply_template("")[:40]) for row in paper)  # the system message is not

    chat, dropped = load_source(Source(jsonl=FIXTURE, messages="messages", turns="all"), template="chat")
    assert len(chat) == 36 and dropped == 1
    roles = [[m["role"] for m in row["messages"]] for row in chat]
    assert roles[0] == ["system", "user", "assistant"]
    assert max(r.count("assistant") for r in roles) == 4  # multi-turn rows keep every exchange
    assert all(r[-1] == "assistant" for r in roles)  # an unanswered last user turn is left out
    first, _ = load_source(Source(jsonl=FIXTURE, messages="messages", turns="first"), template="chat")
    assert [[m["role"] for m in row["messages"]] for row in first][:2] == [
        ["system", "user", "assistant"],
        ["user", "assistant"],
    ]
    # other formats become conversations too: LIMA's turns, and a templated prompt's instruction
    lima, _ = load_source(Source(jsonl="fixture:tiny/lima.jsonl", conversations="conversations"), template="chat")
    dolly, _ = load_source(Source(jsonl="fixture:tiny/dolly_hhrlhf.jsonl"), template="chat")
    assert len(lima) == 37 and [m["role"] for m in lima[0]["messages"]] == ["user", "assistant"]
    assert "### Instruction" not in dolly[0]["messages"][0]["content"]


def test_the_loss_is_on_the_assistant_turns_only_token_by_token(chat_tokenizer):
    conversation, _ = load_source(Source(jsonl=FIXTURE, messages="messages", turns="all"), template="chat")
    messages = next(row["messages"] for row in conversation if len(row["messages"]) >= 7)
    example = encode_chat(chat_tokenizer, messages, max_seq_len=4096)
    text = render(chat_tokenizer, messages)
    whole = chat_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert example["input_ids"] == whole["input_ids"]  # the rendering, tokenized whole

    spans, start = [], 0  # each assistant turn in the rendering: its content and the EOS that ends it
    for message in messages:
        if message["role"] == "assistant":
            begin = text.index(f"<|assistant|>\n{message['content']}", start) + len("<|assistant|>\n")
            start = begin + len(message["content"]) + len(chat_tokenizer.eos_token)
            spans.append((begin, start))
    trained = [any(a <= lo and hi <= b for a, b in spans) for lo, hi in whole["offset_mapping"]]
    assert example["labels"] == [i if t else IGNORE_INDEX for i, t in zip(example["input_ids"], trained, strict=True)]
    assert sum(trained) > 0 and example["labels"][-1] == chat_tokenizer.eos_token_id
    assert encode_chat(chat_tokenizer, messages, max_seq_len=5) is None  # nothing of an answer fits


def test_generation_renders_a_prompt_as_the_template_would(chat_tokenizer):
    assert chat_prompt(chat_tokenizer, "Name a color.") == "<|user|>\nName a color.\n<|assistant|>\n"


def test_chat_is_refused_for_a_tokenizer_without_a_template(tmp_path: Path, capsys):
    from limit.models.base import load_tokenizer, materialize_tiny

    plain = load_tokenizer(str(materialize_tiny(TinyModel(), tmp_path)))
    with pytest.raises(LimitError, match="template: chat, but the tokenizer .* has no chat template"):
        require_chat_template(plain, "finetune")

    capsys.readouterr()  # what building the model printed
    spec = tmp_path / "chat.yaml"
    spec.write_text(edited(lambda d: d.update(template="chat")))
    code, err = run_cli(capsys, "plan", spec)
    assert code == 2 and "models.tiny-mpt.tiny.chat_template: template: chat, but this tokenizer has no" in err


def test_every_exchange_needs_the_chat_template_and_messages_say_which(tmp_path: Path, capsys):
    all_turns = {"source": {"jsonl": FIXTURE, "messages": "messages", "turns": "all"}}
    spec = tmp_path / "paper.yaml"
    spec.write_text(edited(lambda d: d["datasets"].update(chat=all_turns)))
    code, err = run_cli(capsys, "plan", spec)
    assert code == 2 and "datasets.chat.source.turns: all keeps multi-turn rows" in err
    with pytest.raises(ValueError, match="say what a multi-turn row becomes"):
        Source(jsonl=FIXTURE, messages="messages")


def test_the_paper_template_leaves_every_key_as_it_was():
    from limit.steps.inputs import PrepareInput

    assert "template" not in PrepareInput(source=Source(jsonl=FIXTURE)).model_dump()
    assert "messages" not in Source(jsonl=FIXTURE).model_dump() and "turns" not in Source(jsonl=FIXTURE).model_dump()
    assert "chat_template" not in TinyModel().model_dump()


def test_the_generate_step_samples_from_the_chat_rendering(limit_env: Path, chat_tokenizer):
    import json

    from limit.runner import run_step

    inp = {
        "tags": {"run": "tiny-chat"},
        "model": {"tiny": {"d_model": 32, "n_layers": 1, "n_heads": 2, "chat_template": True}},
        "prompts": {"jsonl": "fixture:tiny/judge_prompts.jsonl", "field": "prompt", "limit": 2},
        "generation": {"seeds": [1], "max_total_tokens": 96, "max_new_tokens": 4, "batch_size": 2},
        "template": "chat",
    }
    run_step("generate", json.dumps(inp))
    out = next((limit_env / "artifacts" / "generate").iterdir())
    rows = [json.loads(line) for line in (out / "responses.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:  # the instruction the judge reads is as written; the model saw the chat rendering
        assert row["prompt"] == chat_prompt(chat_tokenizer, row["instruction"]) and "###" not in row["prompt"]
        assert row["prompt_tokens"] == len(chat_tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])


def test_prepare_counts_tokens_as_the_finetune_encodes_them(limit_env: Path, chat_tokenizer):
    import json

    from limit.plan import build_plan
    from limit.runner import run_step
    from limit.spec.study import load_study

    prepare = build_plan(load_study("tiny-lora")).steps["prepare-chat"]
    assert prepare.input.template == "chat" and prepare.input.model_dump()["template"] == "chat"
    summary = run_step("prepare", prepare.input.model_dump_json())
    rows = [
        json.loads(line) for line in (limit_env / "artifacts" / prepare.ref / "data.jsonl").read_text().splitlines()
    ]
    assert summary["rows"] == len(rows) == 36 and all(set(row) == {"messages", "source"} for row in rows)
    examples = [encode_chat(chat_tokenizer, row["messages"], 4096) for row in rows]
    assert summary["total_tokens_max"] == max(len(e["input_ids"]) for e in examples)
    answers = [sum(label != IGNORE_INDEX for label in e["labels"]) for e in examples]
    assert summary["response_tokens_mean"] == pytest.approx(sum(answers) / len(answers), abs=0.01)
