"""alpaca-eval's ranking prompt, as every judge backend here uses it: the template of an annotator config,
the two answers it allows, how a pair is laid out in it, and alpaca-eval's seeded left/right swap rule."""

from __future__ import annotations

import ast
import math
import re
from functools import lru_cache
from pathlib import Path

FIRST_WINS = "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]"
SECOND_WINS = "[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]"
PLACEHOLDERS = ("instruction", "output_1", "output_2")


@lru_cache
def template(annotator: str = "alpaca_eval_gpt4_0613") -> str:
    """The prompt template named by an alpaca-eval annotator config (ChatML text with placeholders)."""
    from alpaca_eval.constants import EVALUATORS_CONFIG_DIR
    from alpaca_eval.utils import load_configs, read_or_return

    configs = load_configs(Path(EVALUATORS_CONFIG_DIR) / annotator)
    config = next(iter(configs.values()))
    return read_or_return(config["prompt_template"], relative_to=EVALUATORS_CONFIG_DIR)


def format_prompt(instruction: str, output_1: str, output_2: str, annotator: str = "alpaca_eval_gpt4_0613") -> str:
    """The ranking prompt for one shown pair, formatted by alpaca-eval's own `make_prompts`."""
    import pandas as pd
    from alpaca_eval.utils import make_prompts

    row = pd.DataFrame([{"instruction": instruction, "output_1": output_1, "output_2": output_2}])
    return make_prompts(row, template(annotator))[0][0]


@lru_cache
def user_message_pattern(annotator: str = "alpaca_eval_gpt4_0613") -> re.Pattern:
    """A regex reading (instruction, output_1, output_2) back out of the prompt's user message."""
    from alpaca_eval.utils import prompt_to_chatml

    user = next(m["content"] for m in prompt_to_chatml(template(annotator)) if m["role"] == "user")
    pieces = re.split(r"\{(instruction|output_1|output_2)\}", user)
    if tuple(pieces[1::2]) != PLACEHOLDERS:
        raise ValueError(f"annotator {annotator}: unexpected placeholders {pieces[1::2]}")
    return re.compile("".join(re.escape(p) if i % 2 == 0 else "(.*)" for i, p in enumerate(pieces)), re.DOTALL)


def ranks_both(raw) -> bool:
    """Whether a judge's answer ranks the two outputs 1 and 2. alpaca-eval's parser reads model_1's rank
    alone, so an answer ranking both 1 (or neither) would count as a win for output 1. An answer that is not
    a ranking list is alpaca-eval's to refuse (and a tie it settled itself has none)."""
    if not isinstance(raw, str) or (isinstance(raw, float) and math.isnan(raw)):
        return True
    try:
        ranks = {c["model"]: c["rank"] for c in ast.literal_eval(raw.strip())}
    except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError):
        return True
    return sorted((ranks.get("model_1"), ranks.get("model_2")), key=str) == [1, 2]


def is_switched(instruction: str, seed: int) -> bool:
    """Whether alpaca-eval shows B first for this instruction under this annotator seed.

    Mirrors `RandomSwitchTwoColumnsProcessor` as `SinglePairwiseAnnotator` configures it (seeded on the
    instruction), so the local judge randomizes positions exactly as the openai path does.
    """
    from alpaca_eval.utils import random_seeded_choice

    return random_seeded_choice(seed="is_switched_outputs" + str(instruction) + str(seed), choices=[False, True])
