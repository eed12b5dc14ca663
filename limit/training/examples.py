"""Turn a (prompt, response) row into a causal-LM training example with loss on the response only.

The sequence is the tokenizer's start (a Llama's BOS, none for MPT or Qwen: `start_ids`), prompt tokens,
response tokens, EOS. Labels copy the input ids except on the prompt,
where they are -100 so the loss ignores them. Truncation keeps the start: a sequence longer than
`max_seq_len` loses its end (the end of the response, EOS included), never the beginning of the prompt.
A prompt so long that no response token survives gives no example (`encode_example` returns None).
Under `template: chat` a row is a conversation: `encode_chat` renders it with the tokenizer's chat template.
"""

from __future__ import annotations

from limit.errors import LimitError
from limit.models.base import start_ids, with_start

IGNORE_INDEX = -100


def encode_example(tokenizer, prompt: str, response: str, max_seq_len: int) -> dict[str, list[int]] | None:
    # Tokenized separately so the boundary is exact; the tokenizer's own start (a Llama's BOS, as lm-eval
    # scores with) in front, untrained like the prompt.
    prompt_ids = with_start(tokenizer, tokenizer(prompt, add_special_tokens=False)["input_ids"])
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + response_ids)[:max_seq_len]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_seq_len]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def encode_chat(tokenizer, messages: list[dict], max_seq_len: int) -> dict[str, list[int]] | None:
    """A conversation rendered by the tokenizer's chat template, loss on the assistant's turns only.

    Each assistant turn is what the template adds when the turn is rendered after the conversation so far
    with the generation prompt: its content and the template's end of turn (which the model must learn to
    write). Everything else (system and user turns, role headers) is prompt. Rendered pieces are tokenized
    one by one so that every boundary is exact; a template whose rendering of a longer conversation does
    not extend the shorter one's (one that rewrites earlier turns) cannot be masked so, and is refused.
    Truncation keeps the start, as `encode_example`'s.
    """
    from limit.data.chat import render

    input_ids: list[int] = []
    labels: list[int] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True)
        whole = render(tokenizer, messages[: i + 1])
        if not (prompt.startswith(done) and whole.startswith(prompt)):
            raise LimitError(
                f"finetune: the chat template of {tokenizer.name_or_path} re-renders earlier turns: its assistant "
                "turns cannot be told apart for the loss (use template: paper, or datasets' turns: first)"
            )
        for text, trained in ((prompt[len(done) :], False), (whole[len(prompt) :], True)):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            input_ids += ids
            labels += ids if trained else [IGNORE_INDEX] * len(ids)
        done = whole
    start = start_ids(tokenizer)
    if input_ids[: len(start)] != start:  # a template that writes no BOS of its own (Llama 3's writes it)
        input_ids, labels = start + input_ids, [IGNORE_INDEX] * len(start) + labels
    input_ids, labels = input_ids[:max_seq_len], labels[:max_seq_len]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}
