"""lm-eval's `HFLM` with packed, context-shared log-likelihood scoring (`gauntlet.backend: packed`): MPT and the
RoPE families (limit/models/families.py).

Tokenization, left truncation, few-shot prompts and metrics stay lm-eval's: this class only replaces how
`_loglikelihood_tokens` runs the model. Each request is cut as HFLM cuts it (the last max_length + 1 tokens
of context + continuation, minus the final one); requests left with the same context become one document
whose continuations branch off it, so the context is computed once. Documents are packed, unpadded, into
rows of at most `batch_tokens` tokens, one forward per row: a token attends to its own document, on its own
branch or the shared context, at the position (ALiBi distance for MPT through `limit.models.mpt.attention`,
RoPE position id through `limit.models.rope`) it would have if its continuation directly followed the
context. Only the positions that predict a continuation token reach the LM head.
"""

from __future__ import annotations

import copy
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm
from transformers import MptForCausalLM

from limit.errors import LimitError
from limit.models import rope
from limit.models.families import ROPE_FAMILIES
from limit.models.mpt.attention import Layout, install

ATTENTION = ("auto", "sdpa", "flex")  # eager needs contiguous positions, which branches are not

Request = tuple[tuple[str, str] | None, list[int], list[int]]
Place = tuple[int, tuple[int, ...]]  # (document, branch tokens): where a request's continuation is scored


@dataclass
class Document:
    """A context as HFLM's model sees it and its branches (a continuation without its last token)."""

    context: tuple[int, ...]
    branches: dict[tuple[int, ...], None] = field(default_factory=dict)  # ordered set

    @property
    def size(self) -> int:
        return len(self.context) + sum(len(b) for b in self.branches)


@dataclass
class Row:
    """One forward: token ids with their layout, and the positions whose next-token distribution is read."""

    ids: list[int] = field(default_factory=list)
    doc: list[int] = field(default_factory=list)
    pos: list[int] = field(default_factory=list)
    branch: list[int] = field(default_factory=list)
    read: list[int] = field(default_factory=list)
    # per place, one index into `read` per continuation token
    reads: dict[Place, list[int]] = field(default_factory=dict)


def scored_context(context: Sequence[int], continuation: Sequence[int], max_length: int) -> tuple[int, ...]:
    """The context HFLM's model sees before `continuation`: it keeps (context + continuation)[-(L + 1):][:-1]."""
    if not context or not continuation:
        raise LimitError("packed scoring: a request has an empty context or continuation")
    if len(continuation) > max_length:
        raise LimitError(f"packed scoring: a continuation of {len(continuation)} tokens exceeds {max_length}")
    return tuple(context[-(max_length + 1 - len(continuation)) :])


def group(requests: Sequence[Request], max_length: int) -> tuple[list[Document], list[Place]]:
    """Documents by scored context, and each request's place among them."""
    index: dict[tuple[int, ...], int] = {}
    documents: list[Document] = []
    places: list[Place] = []
    for _, context, continuation in requests:
        scored = scored_context(context, continuation, max_length)
        if scored not in index:
            index[scored] = len(documents)
            documents.append(Document(scored))
        branch = tuple(continuation[:-1])
        documents[index[scored]].branches[branch] = None
        places.append((index[scored], branch))
    return documents, places


def pack(sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Document indices per row, longest first, each row holding at most `budget` tokens (or one document)."""
    rows: list[list[int]] = []
    used = budget
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        if used + sizes[i] > budget:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += sizes[i]
    return rows


def build_row(documents: Sequence[Document], members: Sequence[int]) -> Row:
    row = Row()
    for number, d in enumerate(members, start=1):
        context = documents[d].context
        row.ids += context
        row.doc += [number] * len(context)
        row.pos += range(len(context))
        row.branch += [0] * len(context)
        last = len(row.read)  # the context's last position predicts every continuation's first token
        row.read.append(len(row.ids) - 1)
        for b, tokens in enumerate(documents[d].branches, start=1):
            row.reads[(d, tokens)] = [last, *range(len(row.read), len(row.read) + len(tokens))]
            row.read += range(len(row.ids), len(row.ids) + len(tokens))
            row.ids += tokens
            row.doc += [number] * len(tokens)
            row.pos += range(len(context), len(context) + len(tokens))
            row.branch += [b] * len(tokens)
    return row


def shared_weights_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The same parameters under a second module tree, so patching its attention leaves `model` as it was."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo=shared)


class PackedLM(HFLM):
    """HFLM whose log-likelihoods come from packed, context-shared forwards (MPT and the RoPE families).

    `generate_until` and everything else stay HFLM's, on transformers' own attention: the packed attention
    lives on a copy of the module tree that shares the weights. `loglikelihood_rolling` is HFLM's, scored here.
    """

    def __init__(self, pretrained, batch_tokens: int | None = None, attention: str = "auto", **kwargs) -> None:
        if attention not in ATTENTION:  # before the model loads
            raise LimitError(f"gauntlet.attention: '{attention}' is not one of {', '.join(ATTENTION)}")
        super().__init__(pretrained=pretrained, **kwargs)
        if self.backend != "causal":
            raise LimitError("gauntlet.backend: packed scores causal language models only; use hf")
        if isinstance(self.model, MptForCausalLM):
            self._scorer = install(shared_weights_copy(self.model), attention)
        elif rope.is_rope(self.model):
            if attention == "flex":
                raise LimitError("gauntlet.attention: flex is MPT's; the RoPE families score through sdpa (auto)")
            self._scorer = rope.scoring_copy(shared_weights_copy(self.model))
        else:
            name = type(self.model).__name__
            raise LimitError(
                f"gauntlet.backend: packed scores MPT and the {', '.join(ROPE_FAMILIES)} families, not {name}; use hf"
            )
        # By default a row holds as many tokens as HFLM's largest padded batch: the same activation memory.
        rows = self.batch_size if isinstance(self.batch_size, int) else 1
        self.batch_tokens = batch_tokens or rows * self.max_length
        self._tokens: dict[str, array] = {}
        self.stats = {"requests": 0, "rows": 0, "tokens": 0}

    # Tokenization: HFLM's, with each distinct string encoded once per `loglikelihood` call (all choices of a
    # question share their context) and kept until the next, as `score_samples` asks for every pair again.

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self._tokens.clear()
        return super().loglikelihood(requests, disable_tqdm=disable_tqdm)

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """TemplateLM's causal split: trailing context whitespace moves over; continuation = whole[len(context):]."""
        assert context, "Context cannot be empty!"
        kept = context.rstrip()
        context, continuation = kept, context[len(kept) :] + continuation
        context_enc = self._encode(context)
        whole = self._encode(context + continuation)
        return context_enc, whole[len(context_enc) :]

    def _encode(self, text: str) -> list[int]:
        if text not in self._tokens:
            self._tokens[text] = array("l", self.tok_encode(text))
        return self._tokens[text].tolist()

    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False, override_bs: int | None = None
    ) -> list[tuple[float, bool]]:
        """(log-likelihood, greedy) per request, in request order. `override_bs` (from HFLM's rolling
        log-likelihood) is ignored: rows are bounded by `batch_tokens`."""
        documents, places = group(requests, self.max_length)
        waiting: dict[int, list[int]] = {}
        for i, (d, _) in enumerate(places):
            waiting.setdefault(d, []).append(i)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        progress = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="Packed loglikelihoods")
        for members in pack([doc.size for doc in documents], self.batch_tokens):
            row = build_row(documents, members)
            mine = [i for d in members for i in waiting[d]]
            try:
                scores = self._score(row, [row.reads[places[i]] for i in mine], [requests[i][2] for i in mine])
            except torch.OutOfMemoryError as e:  # rows come longest first: the first that cannot fit is refused
                raise LimitError(
                    f"gauntlet: a packed row of {len(row.ids)} tokens runs out of memory on this device: lower "
                    f"gauntlet.batch_tokens (now {self.batch_tokens}) or gauntlet.batch_size ({e})"
                ) from None
            for i, answer in zip(mine, scores, strict=True):
                results[i] = answer
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
            progress.update(len(mine))
            self.stats["rows"] += 1
            self.stats["tokens"] += len(row.ids)
        progress.close()
        self.stats["requests"] += len(requests)
        return results  # type: ignore[return-value]

    def _score(self, row: Row, reads: list[list[int]], continuations: list[list[int]]) -> list[tuple[float, bool]]:
        """(summed log-likelihood, every token greedy) per continuation, as HFLM computes them."""
        logprobs = self._log_softmax(row)
        at = torch.tensor([r for rs in reads for r in rs], device=logprobs.device)
        target = torch.tensor([t for c in continuations for t in c], device=logprobs.device)
        lengths = [len(c) for c in continuations]
        picked = logprobs[at, target].cpu()
        greedy = (logprobs.argmax(dim=-1)[at] == target).cpu()
        # One sum per continuation, as HFLM's: the same float rounding on long continuations.
        totals = [float(t.sum()) for t in torch.split(picked, lengths)]
        return list(zip(totals, (bool(g.all()) for g in torch.split(greedy, lengths)), strict=True))

    def _log_softmax(self, row: Row) -> torch.Tensor:
        """(len(row.read), vocab) log-probabilities, in HFLM's softmax dtype, of the positions that are read."""

        def tensor(values: list[int]) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.long, device=self.device)[None]

        layout = Layout(tensor(row.doc), tensor(row.pos), len(row.ids), tensor(row.branch), contiguous=False)
        autocast = torch.autocast(
            device_type=self.device.type,
            dtype=self.mixed_precision_dtype,
            enabled=self.mixed_precision_dtype is not None,
        )
        with torch.no_grad(), autocast:
            if isinstance(self._scorer, MptForCausalLM):
                out = self._scorer.transformer(input_ids=tensor(row.ids), attention_mask=layout, use_cache=False)
            else:
                ids, positions = tensor(row.ids), tensor(row.pos)
                out = self._scorer.base_model(input_ids=ids, position_ids=positions, layout=layout, use_cache=False)
            logits = self._scorer.get_output_embeddings()(out.last_hidden_state[0, tensor(row.read)[0]])
        return F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
