"""Sample one response per prompt for one seed, with transformers or vLLM.

Every prompt gets max_new_tokens = min(spec max_new_tokens, max_total_tokens - prompt tokens), as in the
paper (prompt plus response at most 2048 tokens); sampling stops at EOS, and under a chat template at the
end of the assistant's turn too (limit/data/chat.py `end_of_turn`). Plain temperature / top-p
sampling: top-k is switched off (transformers would otherwise apply its default of 50).
Determinism: for a seed, the same backend, batch size and prompts give the same responses; each batch
(transformers) or request (vLLM) has its own seed, so sampling again only the ones that failed gives what
an attempt without failures would have.

A *failed* generation is one the backend raised on (out of memory, an engine error): its prompts get
finish_reason "error" and the error, never an output. An empty answer, one cut at the token budget and a
prompt too long for any answer are answers: sampling them again with the same seed would give them again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from limit.data.prompts import Prompt
from limit.errors import LimitError
from limit.models.base import context_length, load_tokenizer, loading, with_start
from limit.models.vllm import require_supported
from limit.spec.study import Generation


@dataclass
class Sample:
    output: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str  # "eos", "length", "prompt_too_long", or "error" (the backend failed: see `error`)
    error: str | None = None


def failed(prompt_tokens: int, error: Exception) -> Sample:
    return Sample("", prompt_tokens, 0, "error", f"{type(error).__name__}: {str(error).strip()[:500]}")


def too_big(prompts: int, tokens: int, error: Exception) -> LimitError:
    return LimitError(
        f"generate: the largest batch ({prompts} prompts of up to {tokens} tokens with their responses) runs "
        f"out of memory on this device: lower generation.batch_size ({error})"
    )


def encode_prompts(tokenizer, prompts: list[Prompt]) -> list[list[int]]:
    """Each prompt's ids behind the tokenizer's start (a Llama's BOS, as the finetune trained on and lm-eval
    scores with), once: a chat template's rendering may hold it already."""
    return [with_start(tokenizer, tokenizer(p.prompt, add_special_tokens=False)["input_ids"]) for p in prompts]


def until_stop(tokens: list[int], stop_ids: list[int]) -> tuple[list[int], str]:
    """The new tokens up to the first stop token (EOS, or the end of a chat turn), and why they end there."""
    cut = next((i for i, token in enumerate(tokens) if token in stop_ids), None)
    return (tokens, "length") if cut is None else (tokens[:cut], "eos")


def token_budget(prompt_tokens: int, gen: Generation, context: int | None = None) -> int:
    """New tokens allowed after a prompt of this length (0 when the prompt fills the window already)."""
    total = min(gen.max_total_tokens, context) if context else gen.max_total_tokens
    budget = total - prompt_tokens
    if gen.max_new_tokens is not None:
        budget = min(budget, gen.max_new_tokens)
    return max(budget, 0)


class TransformersSampler:
    """transformers `generate`, batched with left padding; CUDA when available (bf16), else CPU (fp32)."""

    def __init__(self, location: str, revision: str | None = None, trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForCausalLM

        self.tokenizer = load_tokenizer(location, revision)
        self.tokenizer.padding_side = "left"
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        with loading(location):
            self.model = AutoModelForCausalLM.from_pretrained(
                location, revision=revision, trust_remote_code=trust_remote_code, dtype=dtype
            )
        self.model = self.model.to(self.device).eval()
        self.context = context_length(self.model.config)
        self.stop_ids = [self.tokenizer.eos_token_id]  # the generate step adds a chat template's end of turn

    def sample(
        self,
        prompts: list[Prompt],
        gen: Generation,
        seed: int,
        only: set[int] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[Sample | None]:
        """One sample per prompt; with `only`, just the batches holding those prompts (None for the others).
        `on_batch(done)`: called after each batch with the number of prompts answered so far."""
        import torch
        from tqdm import tqdm

        tokenizer = self.tokenizer
        encoded = encode_prompts(tokenizer, prompts)
        budgets = [token_budget(len(ids), gen, self.context) for ids in encoded]
        results: list[Sample | None] = [None] * len(prompts)
        for i, ids in enumerate(encoded):
            if budgets[i] == 0:
                results[i] = Sample("", len(ids), 0, "prompt_too_long")
        # batches of similar lengths waste less padding; the order is fixed, so runs stay reproducible
        order = sorted((i for i in range(len(prompts)) if results[i] is None), key=lambda i: (len(encoded[i]), i))
        batches = [order[k : k + gen.batch_size] for k in range(0, len(order), gen.batch_size)]
        todo = [(k, b) for k, b in enumerate(batches) if only is None or only.intersection(b)]
        # The largest batch first (each has its own seed: the order changes no response), so that one that
        # cannot fit on the device fails in the step's first minute, not after all the smaller ones.
        todo.sort(key=lambda kb: -len(kb[1]) * max(len(encoded[i]) + budgets[i] for i in kb[1]))
        for number, batch in tqdm(todo, desc=f"generate seed {seed}", disable=None, file=sys.stderr):
            torch.manual_seed(seed * 1_000_003 + number)
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt").to(self.device)
            try:
                generated = self._generate(inputs, gen, max(budgets[i] for i in batch))
            except Exception as e:  # the batch failed, not the step: a retry samples it again
                if isinstance(e, torch.OutOfMemoryError) and batch is todo[0][1]:  # the largest: none can fit
                    raise too_big(len(batch), max(len(encoded[i]) + budgets[i] for i in batch), e) from None
                print(f"generate: seed {seed}: a batch failed: {type(e).__name__}: {e}", file=sys.stderr)
                for i in batch:
                    results[i] = failed(len(encoded[i]), e)
                continue
            new_tokens = generated[:, inputs["input_ids"].shape[1] :].tolist()
            for i, tokens in zip(batch, new_tokens, strict=True):
                tokens = tokens[: budgets[i]]  # the batch ran to its longest budget; this prompt stops at its own
                tokens, finish = until_stop(tokens, self.stop_ids)
                text = tokenizer.decode(tokens, skip_special_tokens=True)
                results[i] = Sample(text, len(encoded[i]), len(tokens), finish)
            if on_batch:
                on_batch(sum(r is not None for r in results))
        return [r if only is None or i in only else None for i, r in enumerate(results)]

    def _generate(self, inputs, gen: Generation, max_new_tokens: int):
        import torch

        sampling = gen.temperature > 0
        with torch.no_grad():
            return self.model.generate(
                **inputs,
                do_sample=sampling,
                temperature=gen.temperature if sampling else None,
                top_p=gen.top_p if sampling else None,
                top_k=0 if sampling else None,
                max_new_tokens=max_new_tokens,
                eos_token_id=self.stop_ids,
                pad_token_id=self.tokenizer.pad_token_id,
            )


class VLLMSampler:
    """vLLM with a per-request seed: the same responses whatever the batching."""

    def __init__(self, location: str, revision: str | None = None, trust_remote_code: bool = False):
        require_supported(location, "generation.backend", revision)
        try:
            from vllm import LLM
        except ImportError:
            raise LimitError("generation.backend: 'vllm' is not installed on this machine") from None
        self.llm = LLM(model=location, revision=revision, trust_remote_code=trust_remote_code)
        self.tokenizer = self.llm.get_tokenizer()
        self.context = self.llm.llm_engine.model_config.max_model_len
        self.stop_ids = [self.tokenizer.eos_token_id]

    def sample(
        self,
        prompts: list[Prompt],
        gen: Generation,
        seed: int,
        only: set[int] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[Sample | None]:
        """One vLLM call for the prompts asked (all, or `only`): `on_batch(done)` is called once, at the end."""
        from vllm import SamplingParams

        encoded = encode_prompts(self.tokenizer, prompts)
        budgets = [token_budget(len(ids), gen, self.context) for ids in encoded]
        todo = [i for i, b in enumerate(budgets) if b > 0 and (only is None or i in only)]
        params = [
            SamplingParams(
                n=1,
                temperature=gen.temperature,
                top_p=gen.top_p,
                top_k=-1,
                max_tokens=budgets[i],
                seed=seed * 1_000_003 + i,
                stop_token_ids=self.stop_ids,
            )
            for i in todo
        ]
        results: list[Sample | None] = [Sample("", len(ids), 0, "prompt_too_long") for ids in encoded]
        try:
            outputs = self.llm.generate([{"prompt_token_ids": encoded[i]} for i in todo], params)
        except Exception as e:  # the engine failed this call: every request of it is a failed generation
            outputs = [None] * len(todo)
            error = e
        for i, out in zip(todo, outputs, strict=True):
            if out is None:
                results[i] = failed(len(encoded[i]), error)
                continue
            completion = out.outputs[0]
            finish = "eos" if completion.finish_reason == "stop" else "length"
            results[i] = Sample(completion.text, len(encoded[i]), len(completion.token_ids), finish)
        if on_batch:
            on_batch(len(results))
        return [r if only is None or i in only else None for i, r in enumerate(results)]


def make_sampler(
    backend: str, location: str, revision: str | None = None, trust_remote_code: bool = False
) -> TransformersSampler | VLLMSampler:
    sampler = VLLMSampler if backend == "vllm" else TransformersSampler
    return sampler(location, revision, trust_remote_code)
