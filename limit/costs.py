"""The memory and cost planner: estimated peak memory per GPU and GPU-hours of a finetune, before it starts.

Memory per GPU, in bytes (P parameters, G GPUs, T tokens of one micro-batch, d model width, L layers, H heads,
V vocabulary, w bytes per activation element: 2 in bf16, 4 in fp32):

- model state, by ZeRO stage (w weights, a gradient accumulation, m fp32 master, o optimizer state:
  AdamW 8, Lion 4; a = 4 when bf16 micro-steps accumulate in fp32, else w; on CPU: 4 + 4 + o):
  stage 0  P(w + a + m + o);  1  P(w + a) + P(m + o)/G;  2  Pw + P(a + m + o)/G;
  stage 3  P(w + a + m + o)/G + the gathered working set (two layers and the embedding, in w).
- activations: without checkpointing e elements per token per layer, e = 8d + 2 k + m i (q, attention output,
  norms and residuals; keys and values of width k; the MLP's hidden states of width i, m = 2, 3 when gated):
  MPT's block is 18 d; with checkpointing, each layer's input plus one layer recomputed: T w (L d + e).
- logits: T V (w + 12): the logits, their fp32 copy in the loss, its log-softmax and gradient.
- attention, per head and query-key pair of the micro-batch's documents (S = the sum of their squared
  lengths; a padded row counts at its padded length, a packed one as its documents, except under eager and,
  for the RoPE families, sdpa, whose document mask is dense over the packed row): eager holds 6 bytes
  per layer and peaks at 12 (measured on transformers' MPT); sdpa peaks at 16 (scores, bias, mask) and holds 4;
  flex is linear in T: 8 bytes per head and token. With checkpointing only the recomputed layer counts.
- buffers (GPU): DeepSpeed's reduce and prefetch buckets (about 2 d^2 w, doubled by overlap), stages 1-2 an
  all-gather bucket of 5e8 elements.
- runtime: 2 GiB per GPU for the CUDA context and NCCL; 72 MiB on CPU (measured on the tiny finetune).

Disk (`finetune_disk`): the hub weights, two training states, slack.

Inference on a GPU (bf16, w = 2; no gradients, so one layer's transients at a time):
- gauntlet (`scoring_memory`), one forward of T tokens: weights P w; activations 10 T d w (qkv, the MLP's 4d,
  residual); attention per head: flex 8 T, sdpa 16 per query-key pair of a document (T x the model's max
  length at most), eager (`hf`: padded rows of the max length) 12 per pair; logits over the positions read:
  every position for `hf` (log-softmax in fp32), for `packed` only those predicting a continuation token,
  planned as half the row (continuations are a word to a sentence; the rest is shared context).
- generation (`generation_memory`), a batch of b rows of up to N tokens (prompt and response): weights; the
  KV cache 2 L k w b N (k the key width: d, or fewer key/value heads' under grouped-query attention); the
  prefill's eager attention 12 H b N^2 (one layer); activations 10 b N d w. Logits are the last position's
  only (transformers' `logits_to_keep`).

GPU-hours: (6 P + 6 L d l) x real tokens x epochs / (MFU x peak FLOP/s), l the mean row length (attention
within documents). Recomputation under checkpointing is not counted, as MFU does not count it. Scoring is the
forward only, (2 P + 2 L d l) per forwarded token, l the mean document (limit/gauntlet/volume.py).
Generation (`generation_hours`) is the prefill at the MFU and one decoding step per new token and batch, at
the slowest of its FLOPs, its reads (weights and KV cache) at BANDWIDTH_SHARE of the HBM bandwidth, and
transformers' eager launches (DECODE_LAYER_S a layer).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from limit.errors import LimitError
from limit.models.families import family
from limit.spec.study import LoraSpec, ModelSpec, TinyModel, TrainSpec

GIB = 2**30
# Characters per token under GPT-style BPE on English (MPT's GPT-NeoX tokenizer, Llama's, Qwen's): how the
# planner, which has no tokenizer, sizes text it has only as characters (gauntlet files, prompt sets).
CHARS_PER_TOKEN = 4.0
GPU_RUNTIME = 2 * GIB  # CUDA context and NCCL's buffers
# Measured (2026-12-01, the tiny finetune, from before its model loads): what a CPU process adds beyond the
# terms, the pages of torch's kernels touched on first use, the loader's transient copy, allocator arenas.
CPU_RUNTIME = 72 * 2**20


@dataclass(frozen=True)
class Shape:
    """What the planner needs of a model: widths and counts, from its config. The defaults are MPT's block
    (as many key/value heads as heads, a 4 d_model MLP of two matrices, tied embeddings, no biases); the
    RoPE families set key/value heads (grouped-query attention), a gated MLP (three matrices of
    `intermediate`), untied embeddings, Qwen2's q/k/v biases (and Qwen3 its q/k norms)."""

    d_model: int
    n_layers: int
    n_heads: int
    vocab_size: int
    max_seq_len: int = 2048
    n_kv_heads: int | None = None
    intermediate: int | None = None
    gated: bool = False
    tied: bool = True
    head_dim: int | None = None
    qkv_bias: bool = False
    family: str = "mpt"

    @property
    def kv_dim(self) -> int:
        """Width of the keys (and of the values): key/value heads x head dimension."""
        return (self.n_kv_heads or self.n_heads) * self.head_size

    @property
    def head_size(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def mlp_width(self) -> int:
        return self.intermediate or 4 * self.d_model

    @property
    def params(self) -> int:
        d = self.d_model
        embeddings = self.vocab_size * d * (1 if self.tied else 2)
        return embeddings + self.n_layers * (self.layer_params + 2 * d) + d  # norms: two per layer, one final

    @property
    def layer_params(self) -> int:
        d, q = self.d_model, self.n_heads * self.head_size
        attention = 2 * d * q + 2 * d * self.kv_dim + (q + 2 * self.kv_dim if self.qkv_bias else 0)
        attention += 2 * self.head_size if self.family == "qwen3" else 0  # Qwen3's q and k norms
        return attention + (3 if self.gated else 2) * d * self.mlp_width

    @property
    def activation_elements(self) -> int:
        """Elements per token a layer keeps for its backward: q and the attention output, keys and values, the
        MLP's hidden states (two, three when gated) and the norms and residuals (MPT's block: 18 d)."""
        return 8 * self.d_model + 2 * self.kv_dim + (3 if self.gated else 2) * self.mlp_width


# What the planner reads of a config.json, by family (hubs are not reachable at plan time: KNOWN_CONFIGS).
_MPT_NAMES = ("d_model", "n_layers", "n_heads", "vocab_size")
_ROPE_NAMES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def shape_of(config: dict, what: str) -> Shape:
    """The planner's shape of a model from its config (a config.json's dict); a family limit does not
    support, or a config missing a field, is refused in one line naming `what` (the model)."""
    kind = family(config.get("model_type"), what)
    names = _MPT_NAMES if kind == "mpt" else _ROPE_NAMES
    missing = [n for n in names if not isinstance(config.get(n), int)]
    if missing:
        raise LimitError(f"{what}: config.json of a {kind} model has no {', '.join(missing)}")
    d, layers, heads, vocab = (config[n] for n in names)
    if kind == "mpt":
        return Shape(d, layers, heads, vocab, config.get("max_seq_len") or 2048)
    return Shape(
        d,
        layers,
        heads,
        vocab,
        config.get("max_position_embeddings") or 2048,
        n_kv_heads=config.get("num_key_value_heads") or heads,
        intermediate=config.get("intermediate_size") or 4 * d,
        gated=True,
        tied=bool(config.get("tie_word_embeddings", kind != "llama" and kind != "mistral")),
        head_dim=config.get("head_dim") or d // heads,
        qkv_bias=bool(config.get("attention_bias", kind == "qwen2")),
        family=kind,
    )


# The hub models' config.json, as much of it as the planner reads.
KNOWN_CONFIGS = {
    "mosaicml/mpt-7b": {
        "model_type": "mpt",
        "d_model": 4096,
        "n_layers": 32,
        "n_heads": 32,
        "vocab_size": 50432,
        "max_seq_len": 2048,
    },
    "mosaicml/mpt-30b": {
        "model_type": "mpt",
        "d_model": 7168,
        "n_layers": 48,
        "n_heads": 64,
        "vocab_size": 50432,
        "max_seq_len": 8192,
    },
    "meta-llama/Llama-3.1-8B": {
        "model_type": "llama",
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
        "head_dim": 128,
        "attention_bias": False,
    },
    "Qwen/Qwen3-8B-Base": {
        "model_type": "qwen3",
        "hidden_size": 4096,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 12288,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
        "head_dim": 128,
        "attention_bias": False,
    },
    "Qwen/Qwen2.5-7B": {
        "model_type": "qwen2",
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "vocab_size": 152064,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
    },
    "mistralai/Mistral-7B-v0.3": {
        "model_type": "mistral",
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 14336,
        "vocab_size": 32768,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": False,
        "head_dim": 128,
    },
}
KNOWN_SHAPES = {name: shape_of(config, name) for name, config in KNOWN_CONFIGS.items()}


def tiny_shape(tiny: TinyModel) -> Shape:
    if tiny.arch == "mpt":
        return Shape(tiny.d_model, tiny.n_layers, tiny.n_heads, tiny.vocab_size, tiny.max_seq_len)
    return Shape(
        tiny.d_model,
        tiny.n_layers,
        tiny.n_heads,
        tiny.vocab_size,
        tiny.max_seq_len,
        n_kv_heads=tiny.kv_heads,
        intermediate=tiny.intermediate,
        gated=True,
        tied=tiny.tied,
        head_dim=tiny.d_model // tiny.n_heads,
        qkv_bias=tiny.arch == "qwen2",
        family=tiny.arch,
    )


def model_shape(spec: ModelSpec, what: str = "model") -> Shape | None:
    """The shape of a base model, or None when it cannot be known without the hub."""
    if spec.tiny is not None:
        return tiny_shape(spec.tiny)
    if spec.path is not None:
        config = Path(spec.path) / "config.json"
        if not config.is_file():
            return None
        try:
            raw = json.loads(config.read_bytes())
        except ValueError as e:
            raise LimitError(f"{config}: not a model's config.json: {e}") from None
        return shape_of(raw, f"{what} ({spec.path})")
    return KNOWN_SHAPES.get(spec.hf)


@dataclass(frozen=True)
class Gpu:
    """One GPU of the cluster, as the profile declares it (defaults: an 80 GB H100 SXM)."""

    memory_gib: float = 80.0
    peak_tflops: float = 989.0  # dense bf16
    mfu: float = 0.35  # assumed model FLOP utilisation on real tokens
    memory_tbps: float = 3.35  # HBM bandwidth, TB/s: what bounds decoding
    hour_usd: float | None = None  # the price of one GPU-hour, where the profile gives one


@dataclass
class Memory:
    """Estimated peak bytes per device, by term."""

    terms: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.terms.values())

    @property
    def gib(self) -> float:
        return self.total / GIB

    def describe(self) -> str:
        unit, scale = ("GiB", GIB) if self.total >= GIB else ("MiB", 2**20)
        parts = ", ".join(f"{name} {value / scale:.1f}" for name, value in self.terms.items())
        return f"{self.total / scale:.1f} {unit} ({parts})"


def adapter_params(shape: Shape, lora: LoraSpec) -> int:
    """LoRA's parameters: r x (inputs + outputs) per adapted linear layer of every block, by the family's
    module names (a name the planner does not know counts as the widest, d x the MLP's width)."""
    d, q, kv, m = shape.d_model, shape.n_heads * shape.head_size, shape.kv_dim, shape.mlp_width
    if shape.family == "mpt":
        linears = {"Wqkv": (d, 3 * d), "out_proj": (d, d), "up_proj": (d, m), "down_proj": (m, d)}
    else:
        linears = {"q_proj": (d, q), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (q, d)}
        linears |= {"gate_proj": (d, m), "up_proj": (d, m), "down_proj": (m, d)}
    names = list(linears) if lora.target_modules == "all-linear" else lora.target_modules
    return shape.n_layers * sum(lora.r * sum(linears.get(name, (d, m))) for name in names)


def _state_bytes(shape: Shape, train: TrainSpec, stage: int) -> float:
    """Weights, gradients and optimizer state; with LoRA the base is frozen (its weights only, in the dtype
    it trains in) and the adapters carry the gradients, master copies and optimizer state."""
    w = 2 if (train.gpus and train.precision == "bf16") else 4
    gathered = (2 * shape.layer_params + shape.vocab_size * shape.d_model) * w if stage == 3 and train.gpus else 0
    if train.lora is None:
        return _trained_bytes(shape.params, train, stage) + gathered
    frozen = shape.params * w / (max(train.gpus, 1) if stage == 3 else 1)
    return frozen + _trained_bytes(adapter_params(shape, train.lora), train, stage) + gathered


def _trained_bytes(p: float, train: TrainSpec, stage: int) -> float:
    """The state of `p` trained parameters by ZeRO stage (the module docstring's formulas)."""
    g = max(train.gpus, 1)
    opt = 8 if train.optimizer == "decoupled_adamw" else 4
    if train.gpus == 0:
        return p * (4 + 4 + opt)
    w = 2 if train.precision == "bf16" else 4
    master = 4 if train.precision == "bf16" else 0
    acc = 4 if (train.precision == "bf16" and train.accumulation > 1 and stage > 0) else w
    if stage == 0:
        return p * (w + acc + master + opt)
    if stage == 1:
        return p * (w + acc) + p * (master + opt) / g
    if stage == 2:
        return p * w + p * (acc + master + opt) / g
    return p * (w + acc + master + opt) / g


def _attention_bytes(shape: Shape, train: TrainSpec, implementation: str, tokens: int, pairs: int) -> float:
    """`pairs`: query-key pairs per head of the micro-batch (the sum of squared document or row lengths)."""
    if implementation in ("flex", "flash"):
        peak, held, unit = 8, 4, tokens
    elif implementation == "eager":
        peak, held, unit = 12, 6, pairs
    else:
        peak, held, unit = 16, 4, pairs
    layers_held = 0 if train.gradient_checkpointing else shape.n_layers - 1
    return shape.n_heads * unit * (peak + held * layers_held)


def finetune_memory(shape: Shape, train: TrainSpec, stage: int, longest: int, device: str = "cuda") -> Memory:
    """Peak memory per device of a finetune whose micro-batches hold rows of up to `longest` tokens."""
    row = train.max_seq_len if train.pad_to_max else min(longest, train.max_seq_len)
    tokens = train.micro_batch_size * row
    implementation = _implementation(train, device, shape)
    # A packed row attends within its documents; eager over a packed MPT row, and transformers' document mask
    # for a packed RoPE row, are dense over the whole row.
    dense = implementation == "eager" or (shape.family != "mpt" and implementation == "sdpa")
    pairs = tokens**2 if (train.packing and dense) else tokens * row
    w = 2 if (train.gpus and train.precision == "bf16") else 4
    per_layer = shape.activation_elements
    layers = shape.n_layers * shape.d_model + per_layer if train.gradient_checkpointing else per_layer * shape.n_layers
    terms = {
        "model state": _state_bytes(shape, train, stage),
        "activations": tokens * w * layers,
        "logits": tokens * shape.vocab_size * (w + 12),
        "attention": _attention_bytes(shape, train, implementation, tokens, pairs),
    }
    if train.gpus:
        terms["buffers"] = 2 * 1.9 * shape.d_model**2 * w + (5e8 * w if stage in (1, 2) else 0)
    terms["runtime"] = GPU_RUNTIME if train.gpus else CPU_RUNTIME
    return Memory(terms)


def finetune_disk(shape: Shape, train: TrainSpec) -> Memory:
    """Local disk a finetune pod needs at its peak (the volume is sized from this).

    The base model's weights in the hub cache; two training states at once (the next is written while the
    previous may still be uploading: the store keeps only the latest otherwise, and releases each epoch's
    weights once uploaded); 10% and 1 GiB for data, logs and filesystem slack.
    """
    p = shape.params
    opt = 8 if train.optimizer == "decoupled_adamw" else 4
    w = 2 if train.gpus else 4  # the hub's 16-bit weights; on CPU fp32 safetensors
    if train.lora is not None:  # the states hold the adapters; each epoch is also merged into a whole model
        a = adapter_params(shape, train.lora)
        state, cache = a * (4 + opt) + 2 * a * w, w * p
        terms = {"model cache": cache, "training states": 2 * state, "merged epoch": w * p}
    elif train.gpus:  # DeepSpeed: fp32 master and optimizer shards, the 16-bit module states, gathered safetensors
        state, cache = p * (4 + opt) + 2 * p + 2 * p, 2 * p
        terms = {"model cache": cache, "training states": 2 * state}
    else:  # Trainer on CPU: fp32 safetensors and optimizer.pt
        state, cache = p * (4 + opt), 4 * p
        terms = {"model cache": cache, "training states": 2 * state}
    terms["slack"] = 0.1 * sum(terms.values()) + GIB
    return Memory(terms)


def _implementation(train: TrainSpec, device: str, shape: Shape) -> str:
    """The kernel `auto` picks: flex for MPT on CUDA; RoPE families: sdpa (flash-attention is not in the
    images: where it is installed the finetune picks it, and this estimate is the higher one)."""
    if train.attention != "auto":
        return train.attention
    return "flex" if device == "cuda" and shape.family == "mpt" else "sdpa"


def choose_zero_stage(shape: Shape, train: TrainSpec, gpu: Gpu) -> int:
    """ZeRO-2 where it fits (the gradients' reduce-scatter is all it communicates), else ZeRO-3."""
    fits = finetune_memory(shape, train, 2, train.max_seq_len).gib <= gpu.memory_gib
    return 2 if fits else 3


def finetune_flops(shape: Shape, tokens: float, mean_row: float, lora: LoraSpec | None = None) -> float:
    """Training FLOPs of one pass over `tokens` real tokens in rows of `mean_row` tokens on average. With LoRA
    the frozen weights get no gradient: 4 P (forward, and the backward to their inputs), plus 6 per adapter."""
    weights = 6 * shape.params if lora is None else 4 * shape.params + 6 * adapter_params(shape, lora)
    return tokens * (weights + 6 * shape.n_layers * shape.d_model * mean_row)


def scoring_memory(shape: Shape, backend: str, batch_size: int, batch_tokens: int | None, attention: str) -> Memory:
    """Peak GPU memory of one gauntlet forward: `packed` rows of `batch_tokens` (default batch_size x the max
    length), or `hf`'s padded batches of `batch_size` rows."""
    w, length = 2, shape.max_seq_len
    if backend == "packed":
        tokens = batch_tokens or batch_size * length
        # MPT: flex by default; the RoPE families attend document by document through sdpa
        per_pair = 0 if attention in ("auto", "flex") and shape.family == "mpt" else 16
        attention_bytes = shape.n_heads * (8 * tokens if not per_pair else per_pair * tokens * length)
        read = tokens / 2
    else:
        tokens = batch_size * length
        attention_bytes, read = 12 * shape.n_heads * tokens * length, tokens
    terms = {
        "weights": shape.params * w,
        "activations": 10 * tokens * shape.d_model * w,
        "attention": attention_bytes,
        "logits": read * shape.vocab_size * (w + 8),
        "runtime": GPU_RUNTIME,
    }
    return Memory(terms)


def generation_memory(shape: Shape, batch_size: int, total_tokens: int) -> Memory:
    """Peak GPU memory of transformers' `generate` on `batch_size` rows of up to `total_tokens` tokens."""
    w, rows, n = 2, batch_size, min(total_tokens, shape.max_seq_len)
    terms = {
        "weights": shape.params * w,
        "kv cache": 2 * shape.n_layers * shape.kv_dim * w * rows * n,
        "prefill attention": 12 * shape.n_heads * rows * n * n,
        "activations": 10 * rows * n * shape.d_model * w,
        "runtime": GPU_RUNTIME,
    }
    return Memory(terms)


def gpu_hours(flops: float, gpu: Gpu) -> float:
    return flops / (gpu.mfu * gpu.peak_tflops * 1e12) / 3600


def scoring_flops(shape: Shape, tokens: float, mean_document: float) -> float:
    """Forward FLOPs of scoring `tokens` tokens in documents of `mean_document` tokens: a third of training's."""
    return tokens * (2 * shape.params + 2 * shape.n_layers * shape.d_model * mean_document)


def generation_hours(shape: Shape, gpu: Gpu, rows: int, batch: int, prompt: float, new: float) -> float:
    """GPU-hours of sampling `new` tokens after a `prompt` of that many tokens for each of `rows` rows, `batch`
    at a time: the prefill at the MFU, then one decoding step per new token for every batch (a batch runs
    until its longest row ends, planned as `new`), each bound by its FLOPs, by reading the weights and the
    KV cache at BANDWIDTH_SHARE of the GPU's bandwidth, or by transformers' eager loop's launches
    (DECODE_LAYER_S a layer), whichever is slowest."""
    flops_per_s = gpu.mfu * gpu.peak_tflops * 1e12
    prefill = rows * prompt * 2 * shape.params / flops_per_s
    cache = 2 * shape.n_layers * shape.kv_dim * 2 * batch * (prompt + new / 2)
    step = max(
        2 * shape.params * batch / flops_per_s,
        (2 * shape.params + cache) / (BANDWIDTH_SHARE * gpu.memory_tbps * 1e12),
        DECODE_LAYER_S * shape.n_layers,
    )
    batches = -(-rows // batch)
    return (prefill + batches * new * step) / 3600


# Decoding's assumptions, until `limit check-gpu` measures them: the share of HBM bandwidth a decoding step
# reaches, and the host time transformers' eager `generate` spends per layer per step launching its kernels.
BANDWIDTH_SHARE = 0.6
DECODE_LAYER_S = 4e-4


PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}  # dense, SXM where it varies


def card_peak_tflops(name: str) -> float | None:
    """The dense bf16 peak of a card by its name (torch.cuda.get_device_name), None when unknown."""
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


class PeakMemory:
    """The measured counterpart of an estimate, counting the same terms: `start` before the model loads.

    On CUDA, torch's allocator peak since `start` (model state, activations, logits, attention, buffers) plus
    what the device holds outside the allocator (CUDA context, NCCL: the planner's runtime term), read when the
    peak is. On CPU, the process's peak resident set (Linux's VmHWM, reset at `start` through
    /proc/self/clear_refs so that earlier peaks do not count) above its resident set at `start`.
    """

    def __init__(self, device: str):
        self.device = device
        self.baseline = 0.0

    @classmethod
    def from_here(cls) -> PeakMemory:
        """Started now, on the GPU where one is visible (as the inference steps place their model)."""
        import torch

        peak = cls("cuda" if torch.cuda.is_available() else "cpu")
        peak.start()
        return peak

    def start(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
            self.baseline = float(torch.cuda.memory_allocated())
            return
        with contextlib.suppress(OSError):  # not Linux, or not allowed: the peak may then predate `start`
            Path("/proc/self/clear_refs").write_text("5")
        self.baseline = _status_bytes("VmRSS")

    def peak_gib(self) -> float:
        if self.device == "cuda":
            import torch

            free, total = torch.cuda.mem_get_info()
            outside_allocator = max(0.0, total - free - torch.cuda.memory_reserved())
            return (torch.cuda.max_memory_allocated() - self.baseline + outside_allocator) / GIB
        return max(0.0, _status_bytes("VmHWM") - self.baseline) / GIB


def _status_bytes(field: str) -> float:
    """A memory line of /proc/self/status (in kB there), or 0 where there is none."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.is_file() else []:
        if line.startswith(f"{field}:"):
            return float(line.split()[1]) * 1024
    return 0.0
