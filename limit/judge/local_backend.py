"""The `local` judge: a local Hugging Face causal LM reads alpaca-eval's ranking prompt and prefers whichever
of the two possible rankings it finds more likely (summed log-probabilities of the answer's tokens).

It always parses, needs no network, and randomizes positions with alpaca-eval's own seeded rule, so its
swaps match the openai path's. Prompts longer than the model's context keep their end (the outputs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from limit.judge.ranking import FIRST_WINS, SECOND_WINS, format_prompt, is_switched
from limit.judge.types import Outcome, Pair
from limit.judge.winrate import TIE, WIN_A, WIN_B
from limit.models.base import context_length, start_ids

log = logging.getLogger(__name__)
ASSISTANT = "\n<|im_start|>assistant\n"


@dataclass
class LocalJudge:
    location: str
    annotator: str
    truncated: int = field(default=0, init=False)
    _loaded: tuple | None = field(default=None, init=False, repr=False)

    def cost_per_token(self) -> float | None:
        return 0.0

    def judge(self, pairs: Sequence[Pair], seed: int, cache: Path | None = None) -> list[Outcome]:
        import torch

        tokenizer, model = self._load()
        limit = context_length(model.config) or 4096
        answers = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in (FIRST_WINS, SECOND_WINS)]
        start = start_ids(tokenizer)

        self.truncated = 0
        outcomes: list[Outcome] = []
        for instruction, out_a, out_b in pairs:
            if out_a == out_b:  # alpaca-eval's rule: identical outputs tie without asking the judge
                outcomes.append(Outcome(TIE))
                continue
            switched = is_switched(instruction, seed)
            shown = (out_b, out_a) if switched else (out_a, out_b)
            prompt = format_prompt(instruction, *shown, annotator=self.annotator).strip() + ASSISTANT
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            room = limit - max(len(a) for a in answers) - len(start)
            if len(ids) > room:
                self.truncated += 1
                ids = ids[len(ids) - room :]
            ids = start + ids  # the model's own start (a Llama's BOS), as it was trained and scored with
            with torch.no_grad():
                scores = [_answer_logprob(model, ids, answer) for answer in answers]
            first_wins = scores[0] >= scores[1]
            a_wins = first_wins != switched
            outcomes.append(
                Outcome(
                    WIN_A if a_wins else WIN_B,
                    tokens=float(len(ids) + sum(len(a) for a in answers)),
                    raw=FIRST_WINS if first_wins else SECOND_WINS,
                )
            )
        if self.truncated:
            log.warning("local judge: %d prompt(s) longer than the context were cut from the left", self.truncated)
        return outcomes

    def _load(self):
        if self._loaded is None:
            import torch
            from transformers import AutoModelForCausalLM

            from limit.models.base import load_tokenizer, loading

            tokenizer = load_tokenizer(self.location)
            tokenizer.model_max_length = int(1e9)  # we cut prompts to the model's context ourselves
            with loading(self.location):
                model = AutoModelForCausalLM.from_pretrained(self.location, dtype=torch.float32).eval()
            self._loaded = (tokenizer, model)
        return self._loaded


def _answer_logprob(model, prompt_ids: list[int], answer_ids: list[int]) -> float:
    """Sum of log p(answer token | prompt, earlier answer tokens)."""
    import torch

    ids = torch.tensor([prompt_ids + answer_ids])
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return float(logprobs.gather(1, torch.tensor(answer_ids)[:, None]).sum())
