"""Conversations as lists of {role, content} messages, and the tokenizer's chat template that renders them.

A study's `template: chat` renders every conversation with the base tokenizer's own chat template
(`apply_chat_template`), in the same way wherever text meets the model: `prepare` counts the rendering's
tokens, the finetune trains on it (loss on the assistant's turns only: limit/training/examples.py),
generation renders each judge prompt as a one-message conversation waiting for the assistant's turn.
The judge reads the instruction and both responses as text, as under the paper's template.
"""

from __future__ import annotations

from limit.errors import LimitError

Message = dict[str, str]
ROLES = ("system", "user", "assistant")


def parse_messages(value, where: str) -> list[Message]:
    """A row's messages, checked: a list of {role, content} with a known role and text content."""
    if not isinstance(value, list):
        raise LimitError(f"{where}: messages is not a list of {{role, content}}")
    messages = []
    for i, message in enumerate(value):
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if role not in ROLES or not isinstance(content, str):
            raise LimitError(f"{where}: message {i}: needs a role ({', '.join(ROLES)}) and a text content")
        messages.append({"role": role, "content": content})
    return messages


def from_turns(turns: list[str]) -> list[Message]:
    """LIMA's conversations: the user's turns and the assistant's, alternately, the user's first."""
    return [{"role": ROLES[1 + i % 2], "content": turn} for i, turn in enumerate(turns)]


def reduce_turns(messages: list[Message], turns: str) -> list[Message] | None:
    """`first`: the system messages before the first user message, it, and the assistant's answer to it;
    `all`: every message up to the assistant's last. None when no assistant turn answers a user's."""
    first_user = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
    if first_user is None:
        return None
    answers = [i for i, m in enumerate(messages) if m["role"] == "assistant" and i > first_user]
    if not answers:
        return None
    system = [m for m in messages[:first_user] if m["role"] == "system"]
    if turns == "first":
        return [*system, messages[first_user], messages[answers[0]]]
    return [*system, *messages[first_user : answers[-1] + 1]]


def first_exchange(messages: list[Message]) -> tuple[str, str]:
    """(instruction, response) of a conversation: its first user message and the assistant's answer."""
    user = next(m for m in messages if m["role"] == "user")
    answer = next(m for m in messages[messages.index(user) :] if m["role"] == "assistant")
    return user["content"], answer["content"]


def require_chat_template(tokenizer, what: str) -> None:
    """template: chat needs a tokenizer that ships a chat template: refused in one line otherwise."""
    if not getattr(tokenizer, "chat_template", None):
        raise LimitError(
            f"{what}: template: chat, but the tokenizer {tokenizer.name_or_path} has no chat template: use "
            "template: paper, or a tokenizer that has one (models.NAME.tokenizer)"
        )


def render(tokenizer, messages: list[Message], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def chat_prompt(tokenizer, instruction: str) -> str:
    """A judge prompt as the model sees it under template: chat: one user message, the assistant's turn next."""
    return render(tokenizer, [{"role": "user", "content": instruction}], add_generation_prompt=True)


PROBE = "LIMIT_END_OF_TURN_PROBE"


def end_of_turn(tokenizer) -> list[int]:
    """The special token the chat template closes an assistant's turn with, where it is not EOS (Llama 3's
    <|eot_id|>, Qwen's <|im_end|>): the finetune learned to write it, so generation stops at it too."""
    text = render(tokenizer, [{"role": "user", "content": "?"}, {"role": "assistant", "content": PROBE}])
    after = text[text.index(PROBE) + len(PROBE) :] if PROBE in text else ""
    ids = tokenizer(after, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return ids[:1] if ids and ids[0] in special and ids[0] != tokenizer.eos_token_id else []
