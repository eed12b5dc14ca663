"""Document-local ALiBi attention for transformers' MPT, in three implementations: eager, sdpa, flex.

transformers' `MptForCausalLM` attends eagerly only: a float32 (batch, heads, L, L) score tensor per layer, an
ALiBi bias built at `max_seq_len` (a packed row longer than that fails), and no notion of documents. `install`
swaps the classes of a loaded model's trunk and attention modules for the ones below. Weights, state-dict keys
and `config.architectures` stay those of `MptForCausalLM`, so checkpoints are plain MPT.

Who may attend to whom is a `Layout`: per token a document id (0 = padding), an ALiBi position and, for a
shared context scored with several continuations, a branch id (0 = the shared trunk). A query sees a key of
the same document at a position not after its own, on its own branch or the trunk. ALiBi is
slope_h x (key position - query position); MPT's own bias is relative to the row's last key, which differs
by a constant per query, and softmax ignores that.

- `eager`: transformers' own attention code, given a dense mask of the layout (the reference).
- `sdpa`: `scaled_dot_product_attention` with an additive bias; a row holding several documents is attended
  document by document, so the cost is the sum over documents, never the square of the packed row.
- `flex`: FlexAttention with an ALiBi `score_mod` and a `BlockMask` from the layout: memory linear in the row,
  fully masked blocks skipped. Compiled on CUDA; forward only on CPU (torch has no CPU backward for it).
  Compiled flex needs a head dimension of at least 16 (inductor refuses smaller ones), and rows are padded
  to a multiple of its block size so that packed rows of every length share one compiled graph.

The transformers versions this runs on name the KV cache `past_key_values` (up to 5.23) or `cache` (5.24 on):
the forwards below accept either and return it under the name the installed version's output class has.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions
from transformers.models.mpt.modeling_mpt import MptAttention, MptForCausalLM, MptModel, build_mpt_alibi_tensor

from limit.errors import LimitError

IMPLEMENTATIONS = ("auto", "flex", "sdpa", "eager")
FLEX_MIN_HEAD_DIM = 16  # inductor's flex template: "embedding dimension ... must be at least 16"
FLEX_BLOCK = 128  # flex's default sparse block size: rows are padded to a multiple of it


def resolve(implementation: str, device: torch.device | str, head_dim: int = FLEX_MIN_HEAD_DIM) -> str:
    """`auto` is flex where it trains (CUDA, heads of at least 16 dimensions) and sdpa elsewhere."""
    if implementation not in IMPLEMENTATIONS:
        raise LimitError(f"attention: unknown implementation '{implementation}' (known: {', '.join(IMPLEMENTATIONS)})")
    cuda = torch.device(device).type == "cuda"
    if implementation == "auto":
        return "flex" if cuda and head_dim >= FLEX_MIN_HEAD_DIM else "sdpa"
    if implementation == "flex" and cuda and head_dim < FLEX_MIN_HEAD_DIM:
        raise LimitError(
            f"attention: flex compiles on CUDA for head dimensions of at least {FLEX_MIN_HEAD_DIM}, this model's "
            f"is {head_dim} (d_model / n_heads): use attention sdpa or auto"
        )
    return implementation


def alibi_slopes(n_heads: int, bias_max: float = 8) -> torch.Tensor:
    """MPT's per-head slopes: 2^(-bias_max i / n), n the next power of two, interleaved when n_heads is not one."""
    n = 2 ** math.ceil(math.log2(n_heads))
    slopes = 2.0 ** -(torch.arange(1, n + 1, dtype=torch.float64) * (bias_max / n))
    if n != n_heads:
        slopes = torch.cat([slopes[1::2], slopes[::2]])[:n_heads]
    return slopes.float()


@dataclass
class Layout:
    """Documents, ALiBi positions and branches of a batch's keys; the last `queries` keys are the queries."""

    doc: torch.Tensor  # (batch, keys) long, 0 = padding
    pos: torch.Tensor  # (batch, keys) long
    queries: int
    branch: torch.Tensor | None = None  # (batch, keys) long, 0 = shared trunk
    contiguous: bool = True  # positions are key indices (eager's bias assumes so)
    _biases: dict = field(default_factory=dict, repr=False)

    @staticmethod
    def from_mask(attention_mask: torch.Tensor | None, batch: int, queries: int, keys: int, device) -> Layout:
        """A padded batch (or a cached one): each row one document, padding where the mask is 0."""
        real = torch.ones(batch, keys, device=device) if attention_mask is None else attention_mask[:, -keys:]
        pos = torch.arange(keys, device=device).expand(batch, keys)
        return Layout(doc=(real != 0).long(), pos=pos, queries=queries)

    @staticmethod
    def from_positions(position_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Layout:
        """Packed rows in transformers' padding-free form: a document starts where its position is 0."""
        doc = (position_ids == 0).long().cumsum(-1)
        if attention_mask is not None:
            doc = doc * (attention_mask != 0)
        keys = position_ids.shape[-1]
        pos = torch.arange(keys, device=position_ids.device).expand_as(position_ids)
        return Layout(doc=doc, pos=pos, queries=keys)

    @property
    def cached(self) -> int:
        return self.doc.shape[1] - self.queries

    def visible(self) -> torch.Tensor:
        """(batch, queries, keys) bool: which keys each query may attend to."""
        doc_q, pos_q = self.doc[:, self.cached :, None], self.pos[:, self.cached :, None]
        ok = (self.doc[:, None, :] == doc_q) & (self.pos[:, None, :] <= pos_q)
        if self.branch is not None:
            branch_k, branch_q = self.branch[:, None, :], self.branch[:, self.cached :, None]
            ok &= (branch_k == 0) | (branch_k == branch_q)
        return ok

    def bias(self, slopes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(batch, heads, queries, keys) additive ALiBi bias, -inf where a key is not visible.

        Every layer of a forward asks for the same bias: it is built once per layout.
        """
        key = (dtype, tuple(slopes.tolist()))
        if key not in self._biases:
            distance = (self.pos[:, None, :] - self.pos[:, self.cached :, None]).float()
            distance.masked_fill_(~self.visible(), float("-inf"))  # before the heads: slopes are positive
            self._biases[key] = (slopes.to(distance.device)[None, :, None, None] * distance[:, None]).to(dtype)
        return self._biases[key]

    def span_biases(self, slopes: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
        """The bias of each document in `spans`, built once per layout; plain causal ones share one corner."""
        key = ("spans", dtype, tuple(slopes.tolist()))
        if key not in self._biases:
            parts = [self.part(*span) for span in self.spans]
            self._biases[key] = [
                causal_bias(part.queries, slopes, dtype, part.pos.device) if part.causal else part.bias(slopes, dtype)
                for part in parts
            ]
        return self._biases[key]

    @property
    def causal(self) -> bool:
        """One document with consecutive positions, its one branch (if any) after the trunk: plain causal."""
        if self.cached or self.doc.shape[0] != 1 or int(self.doc.min()) != int(self.doc.max()):
            return False
        pos = self.pos[0]
        if not torch.equal(pos - pos[0], torch.arange(len(pos), device=pos.device)):
            return False
        branch = self.branch
        return branch is None or (int(branch.max()) <= 1 and bool((branch[0, 1:] >= branch[0, :-1]).all()))

    @cached_property
    def spans(self) -> list[tuple[int, int, int]] | None:
        """(row, start, end) of every document when some row holds several (packed); None otherwise."""
        if self.cached or self.doc.shape[1] == 0 or int(self.doc.max(dim=1).values.max()) <= 1:
            return None
        found = []
        for row, docs in enumerate(self.doc.tolist()):
            start = 0
            for i in range(1, len(docs) + 1):
                if i == len(docs) or docs[i] != docs[start]:
                    if docs[start] != 0:
                        found.append((row, start, i))
                    start = i
        return found

    def part(self, row: int, start: int, end: int) -> Layout:
        sl = (slice(row, row + 1), slice(start, end))
        branch = None if self.branch is None else self.branch[sl]
        return Layout(self.doc[sl], self.pos[sl], end - start, branch, self.contiguous)


_CAUSAL_BIASES: dict[tuple, torch.Tensor] = {}
CAUSAL_BIAS_CACHE_BYTES = 256 * 2**20  # longer documents build their own bias: a cached one is never freed


def causal_bias(length: int, slopes: torch.Tensor, dtype: torch.dtype, device) -> torch.Tensor:
    """(1, heads, length, length) ALiBi bias of a plain causal document: a corner of the largest one built so far.

    ALiBi depends on distances only, so every causal document's bias is the top-left corner of a longer one;
    documents of a packed row (and rows of an evaluation) reuse it instead of building their own.
    """
    key = (tuple(slopes.tolist()), dtype, str(device))
    built = _CAUSAL_BIASES.get(key)
    if built is None or built.shape[-1] < length:
        size = -(-length // 128) * 128
        pos = torch.arange(size, device=device)[None]
        built = Layout(torch.ones_like(pos), pos, size).bias(slopes, dtype)
        if built.numel() * built.element_size() <= CAUSAL_BIAS_CACHE_BYTES:
            _CAUSAL_BIASES[key] = built
    return built[:, :, :length, :length]


def sdpa(q, k, v, layout: Layout, slopes, scale: float, dropout: float) -> torch.Tensor:
    if layout.spans is None:
        bias = layout.bias(slopes, q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout, scale=scale)
    rows: list[list[torch.Tensor]] = [[] for _ in range(q.shape[0])]
    ends = [0] * q.shape[0]
    for (row, start, end), bias in zip(layout.spans, layout.span_biases(slopes, q.dtype), strict=True):
        if start > ends[row]:  # padding between documents attends to nothing
            rows[row].append(q.new_zeros(1, q.shape[1], start - ends[row], q.shape[3]))
        piece = (slice(row, row + 1), slice(None), slice(start, end))
        rows[row].append(
            F.scaled_dot_product_attention(q[piece], k[piece], v[piece], attn_mask=bias, dropout_p=dropout, scale=scale)
        )
        ends[row] = end
    for row, end in enumerate(ends):
        if end < q.shape[2]:
            rows[row].append(q.new_zeros(1, q.shape[1], q.shape[2] - end, q.shape[3]))
    return torch.cat([torch.cat(pieces, dim=2) for pieces in rows])


COMPILED_DEVICES = {"cuda"}  # flex is compiled there; elsewhere it runs torch's reference (forward only on CPU)
COMPILE_BACKEND = "inductor"
_compiled: dict[str, object] = {}


def compiled(name: str, fn):
    """`fn` compiled once for every shape (dynamic): a packed row of a new length reuses the graph."""
    if name not in _compiled:
        _compiled[name] = torch.compile(fn, dynamic=True, backend=COMPILE_BACKEND)
    return _compiled[name]


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _pad(t: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - t.shape[dim]
    if not missing:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t, t.new_zeros(shape)], dim=dim)


def _padded_layout(layout: Layout, queries: int) -> tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Padded lengths and the padded layout tensors, once per layout: every layer's `score_mod` and `mask_mod`
    then close over the same tensors, as the compiled graph's guards on them expect. At least two blocks: a
    length of one block would be specialised apart from all the others."""
    key = ("flex", queries)
    if key not in layout._biases:
        padded_q = max(_round_up(queries, FLEX_BLOCK), 2 * FLEX_BLOCK)
        padded_k = _round_up(padded_q + layout.cached, FLEX_BLOCK)
        branch = None if layout.branch is None else _pad(layout.branch, padded_k, 1)
        layout._biases[key] = (padded_q, padded_k, _pad(layout.doc, padded_k, 1), _pad(layout.pos, padded_k, 1), branch)
    return layout._biases[key]


def flex(q, k, v, layout: Layout, slopes, scale: float, dropout: float) -> torch.Tensor:
    """Queries and keys padded to a multiple of FLEX_BLOCK (padding is document 0, which no real query sees):
    the compiled kernels and block masks then meet a bounded set of shapes whatever the packed row's length."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    if dropout:
        raise LimitError("attention: flex has no attention dropout (attn_pdrop); use sdpa")
    offset, queries = layout.cached, q.shape[2]
    padded_q, padded_k, doc, pos, branch = _padded_layout(layout, queries)

    def score_mod(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (pos[b, kv_idx] - pos[b, q_idx + offset])

    def mask_mod(b, h, q_idx, kv_idx):
        ok = (doc[b, kv_idx] == doc[b, q_idx + offset]) & (pos[b, kv_idx] <= pos[b, q_idx + offset])
        if branch is not None:
            ok = ok & ((branch[b, kv_idx] == 0) | (branch[b, kv_idx] == branch[b, q_idx + offset]))
        return ok

    compile_here = q.device.type in COMPILED_DEVICES
    key = ("block_mask", q.shape[0], padded_q, padded_k, str(q.device))
    if key not in layout._biases:  # every layer of a forward attends through the same mask: build it once
        build = compiled("create_block_mask", create_block_mask) if compile_here else create_block_mask
        layout._biases[key] = build(mask_mod, q.shape[0], None, padded_q, padded_k, q.device)
    attend = compiled("flex_attention", flex_attention) if compile_here else flex_attention
    q, k, v = _pad(q, padded_q, 2), _pad(k, padded_k, 2), _pad(v, padded_k, 2)
    out = attend(q, k, v, score_mod=score_mod, block_mask=layout._biases[key], scale=scale)
    return out[:, :, :queries]


KERNELS = {"sdpa": sdpa, "flex": flex}


def _cache_of(cache, kwargs: dict):
    """The KV cache under either name transformers has given it (`past_key_values` before 5.24)."""
    return cache if cache is not None else kwargs.get("past_key_values")


# The installed transformers' name for the cache in MPT's output (`cache` from 5.24, `past_key_values` before).
_OUTPUT_FIELDS = BaseModelOutputWithPastAndCrossAttentions.__dataclass_fields__
_OUTPUT_CACHE = "cache" if "cache" in _OUTPUT_FIELDS else "past_key_values"


class DocumentAttention(MptAttention):
    """MPT's attention module (same parameters) reading a `Layout` where transformers passes a dense mask."""

    implementation = "sdpa"

    def forward(self, hidden_states, position_bias=None, cache=None, attention_mask=None, **kwargs):
        layout: Layout = attention_mask
        cache = _cache_of(cache, kwargs)
        implementation = self.kernel(hidden_states.device, layout)
        if implementation == "eager":
            return self._eager(hidden_states, layout, cache)
        batch, length = hidden_states.shape[:2]
        qkv = self.Wqkv(hidden_states)
        if self.clip_qkv:
            qkv = qkv.clamp(min=-self.clip_qkv, max=self.clip_qkv)
        q, k, v = (t.reshape(batch, length, self.n_heads, self.head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=2))
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        dropout = self.attn_dropout_p if self.training else 0.0
        slopes = self.slopes_on(hidden_states.device)
        out = KERNELS[implementation](q, k, v, layout, slopes, self.softmax_scale, dropout)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, -1)), None

    def kernel(self, device: torch.device, layout: Layout) -> str:
        """`auto` decodes (a cached layout) with sdpa: a one-token query gains nothing from a block mask."""
        resolved = resolve(self.implementation, device, self.head_dim)
        if self.implementation == "auto" and layout.cached:
            return "sdpa"
        return resolved

    def _eager(self, hidden_states, layout: Layout, cache):
        if not layout.contiguous:
            raise LimitError("attention: eager takes contiguous positions only; use sdpa or flex")
        keys = layout.doc.shape[1]
        alibi = build_mpt_alibi_tensor(self.n_heads, keys, device=hidden_states.device)
        masked = ~layout.visible()[:, None]
        return super().forward(hidden_states, position_bias=alibi, attention_mask=masked, **{_ATTENTION_CACHE: cache})

    def slopes_on(self, device: torch.device) -> torch.Tensor:
        """fp32 ALiBi slopes kept on each device they are used on: no host-to-device copy per layer and step
        (and not a buffer, which a bf16 cast of the model would round)."""
        by_device = self.__dict__.setdefault("_slopes", {})
        if device not in by_device:
            by_device[device] = alibi_slopes(self.n_heads, self.alibi_bias_max).to(device)
        return by_device[device]


# The installed transformers' keyword for the cache in MptAttention.forward.
_ATTENTION_CACHE = "cache" if "cache" in inspect.signature(MptAttention.forward).parameters else "past_key_values"


class DocumentMptModel(MptModel):
    """MPT's trunk building one `Layout` per forward instead of a dense mask and an ALiBi tensor."""

    def forward(
        self,
        input_ids=None,
        cache=None,
        attention_mask=None,
        inputs_embeds=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        hidden = self.wte(input_ids) if inputs_embeds is None else inputs_embeds
        cache = _cache_of(cache, kwargs)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if self.gradient_checkpointing and self.training:
            use_cache = False
        if use_cache and cache is None:
            from transformers.cache_utils import DynamicCache

            cache = DynamicCache(config=self.config)
        batch, queries = hidden.shape[:2]
        keys = queries + (cache.get_seq_length() if cache is not None else 0)
        layout = attention_mask
        if not isinstance(layout, Layout):
            layout = Layout.from_mask(attention_mask, batch, queries, keys, hidden.device)
        states = [] if output_hidden_states else None  # inference keeps no layer's input unless asked
        for block in self.blocks:
            if states is not None:
                states.append(hidden)
            hidden = block(hidden, position_bias=None, attention_mask=layout, layer_past=cache, use_cache=use_cache)[0]
        hidden = self.norm_f(hidden)
        all_states = (*states, hidden) if states is not None else None
        out = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden, hidden_states=all_states, **{_OUTPUT_CACHE: cache}
        )
        return out if return_dict is not False else out.to_tuple()


def _packed_positions(module, args, kwargs):
    """transformers' padding-free batches carry `position_ids`, which MptForCausalLM does not pass down."""
    position_ids = kwargs.pop("position_ids", None)
    if position_ids is not None:
        kwargs["attention_mask"] = Layout.from_positions(position_ids, kwargs.get("attention_mask"))
    return args, kwargs


def install(model, implementation: str):
    """Make a loaded MPT attend through `implementation` (`auto` is resolved on the device of each call)."""
    if not isinstance(model, MptForCausalLM):
        raise LimitError(f"attention: {type(model).__name__} is not MPT; only MptForCausalLM takes this attention")
    resolve(implementation, "cpu")  # an unknown name fails here, not in the first forward
    model.transformer.__class__ = DocumentMptModel
    for block in model.transformer.blocks:
        block.attn.__class__ = DocumentAttention
        block.attn.implementation = implementation
        block.attn.alibi_bias_max = model.config.attn_config.alibi_bias_max
    if not getattr(model, "_limit_packed_hook", False):
        model.register_forward_pre_hook(_packed_positions, with_kwargs=True)
        model._limit_packed_hook = True
    return model
