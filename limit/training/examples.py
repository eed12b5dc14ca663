"""Turn a (prompt, response) row into a causal-LM training example with loss on the response only.

The sequence is prompt tokens, response tokens, EOS. Labels copy the input ids except on the prompt,
where they are -100 so the loss ignores them. Truncation keeps the start: a sequence longer than
`max_seq_len` loses its end (the end of the response, EOS included), never the beginning of the prompt.
A prompt so long that no response token survives gives no example (`encode_example` returns None).
"""

from __future__ import annotations

IGNORE_INDEX = -100


def encode_example(tokenizer, prompt: str, response: str, max_seq_len: int) -> dict[str, list[int]] | None:
    # Tokenized separately so the boundary is exact; no special tokens (MPT's tokenizer adds no BOS).
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + response_ids)[:max_seq_len]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_seq_len]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}
