"""The instruction template of the LIMIT paper (MosaicML's Alpaca-style prompt).

The mosaicml datasets (dolly_hhrlhf, instruct-v3) ship prompts already in this form; raw instructions
(LIMA, judge prompts) are wrapped with `apply_template`.
"""

from __future__ import annotations

import re

INSTRUCTION_KEY = "### Instruction:"
RESPONSE_KEY = "### Response:"
PREAMBLE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
TEMPLATE = f"{PREAMBLE}\n\n{INSTRUCTION_KEY}\n{{instruction}}\n\n{RESPONSE_KEY}\n"


def apply_template(instruction: str) -> str:
    return TEMPLATE.format(instruction=instruction)


def is_templated(prompt: str) -> bool:
    """True when `prompt` already holds the template (so it must not be wrapped again)."""
    return prompt.startswith(PREAMBLE) and prompt.rstrip().endswith(RESPONSE_KEY)


# "### Instruction" (Instruct-v3's release file has no colon) up to "### Response:", each on its own line
TEMPLATED = re.compile(
    "^" + re.escape(PREAMBLE) + r"\s*\n### Instruction:?[ \t]*\n(?P<instruction>.*?)\n[ \t]*### Response:?\s*\Z",
    re.DOTALL,
)


def instruction_of(templated: str) -> str:
    """The raw instruction inside a templated prompt (the text as is when it is not templated)."""
    match = TEMPLATED.match(templated.strip() + "\n")
    return match["instruction"].strip() if match else templated.strip()
