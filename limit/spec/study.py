"""The study spec: what a user writes in YAML, validated with pydantic.

Errors point at the file, the line and the dotted field (``studies/x.yaml:12: runs.0.dataset: ...``).
The spec says *what* to study; `limit.plan` turns it into steps.
"""

from __future__ import annotations

import ipaddress
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from limit.execution.locations import WORKFLOWS, Location, parse_locations
from limit.quantities import parse_quantity
from limit.spec.loader import FieldError, first_error, load_model, resolve_named

STUDIES_DIR = WORKFLOWS / "studies"

# The bounds of what a study may ask for: beyond them a step would fail, or the plan itself would not fit.
MAX_SEED = 2**32 - 1  # numpy's seeds (transformers' set_seed seeds numpy too)
MAX_EPOCHS = 1000
MAX_NAME = 60  # a run, baseline, dataset or prompt set name
MAX_CPU = 4096  # cores of one pod: more is a typo, never a node
TINY_MAX_PARAMS = 1e9  # a tiny model is built in memory from its config
MAX_TOKENS = 2**20  # a sequence: max_seq_len, generation budgets
MAX_BATCH = 2**16  # rows in a batch
MAX_ROWS = 10**9  # rows sampled from a dataset
MAX_SEEDS = 100  # generation seeds (each a full set of responses and a judge run)
TINY_MIN_VOCAB = 258  # the tiny tokenizer's byte alphabet (256) and its two special tokens

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class Strict(BaseModel):
    # allow_inf_nan: an infinite lr would be written to the step's JSON input as null
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    # Fields left out of a dump while they hold one of these values: a field added later leaves every earlier
    # input, and so its step's key, as it was. One serializer here; a model only declares its fields.
    absent_when: ClassVar[dict[str, tuple]] = {}

    @model_serializer(mode="wrap")
    def _without_absent(self, handler) -> dict[str, Any]:
        data = handler(self)
        for name, values in self.absent_when.items():
            if name in data and any(data[name] is v or data[name] == v for v in values):
                del data[name]
        return data


def exactly_one(model: BaseModel, *fields: str):
    """Validator body for "give exactly one of these fields"; returns the model."""
    given = [f for f in fields if getattr(model, f) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(fields)} (got {given or 'none'})")
    return model


# ---------------------------------------------------------------- models


class TinyModel(Strict):
    """A tiny model built from config (seeded random init) with a BPE tokenizer trained on the fixtures: an MPT
    by default, or a RoPE family (`arch`) through transformers' own class. `n_kv_heads` (grouped-query
    attention), `intermediate_size` (MLP width; default 4 d_model, gated families 3 d_model) and
    `tie_embeddings` (default: MPT and Qwen tie, Llama and Mistral do not) shape the RoPE families only."""

    arch: Literal["mpt", "llama", "mistral", "qwen2", "qwen3"] = "mpt"
    d_model: int = Field(64, gt=0, le=2**16)
    n_layers: int = Field(2, gt=0, le=1024)
    n_heads: int = Field(4, gt=0, le=1024)
    n_kv_heads: int | None = Field(None, gt=0, le=1024)
    intermediate_size: int | None = Field(None, gt=0, le=2**18)
    tie_embeddings: bool | None = None
    max_seq_len: int = Field(512, gt=0, le=MAX_TOKENS)
    vocab_size: int = Field(
        1024, ge=TINY_MIN_VOCAB, le=2**20, description="At least the byte alphabet and the special tokens."
    )
    seed: Seed = 0
    chat_template: bool = Field(
        False, description="Give the tokenizer a small chat template (limit/models/base.py), for template: chat."
    )

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModel:
        if self.d_model % self.n_heads:
            raise FieldError("n_heads", f"{self.n_heads} heads do not divide d_model {self.d_model}")
        if self.arch == "mpt":
            for name in ("n_kv_heads", "intermediate_size", "tie_embeddings"):
                if getattr(self, name) is not None:
                    raise FieldError(name, "shapes the RoPE families only (arch llama, mistral, qwen2, qwen3)")
        elif self.n_heads % self.kv_heads:
            raise FieldError("n_kv_heads", f"{self.kv_heads} key/value heads do not divide n_heads {self.n_heads}")
        params = self.n_layers * self.layer_params + self.vocab_size * self.d_model * (1 if self.tied else 2)
        if params > TINY_MAX_PARAMS:  # built in memory on the planning machine's terms: it would die allocating
            raise FieldError(
                "d_model", f"~{params:.1e} parameters is not tiny (at most {TINY_MAX_PARAMS:.0e}): use hf: or path:"
            )
        return self

    # Left out of dumps at these values: a tiny MPT's inputs, hence its model folder and steps' keys, as before.
    absent_when: ClassVar[dict[str, tuple]] = {
        "arch": ("mpt",),
        "n_kv_heads": (None,),
        "intermediate_size": (None,),
        "tie_embeddings": (None,),
        "chat_template": (False,),
    }

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def intermediate(self) -> int:
        return self.intermediate_size or (4 if self.arch == "mpt" else 3) * self.d_model

    @property
    def tied(self) -> bool:
        if self.tie_embeddings is not None:
            return self.tie_embeddings
        return self.arch in ("mpt", "qwen2", "qwen3")

    @property
    def layer_params(self) -> int:
        d, head = self.d_model, self.d_model // self.n_heads
        mlp = (2 if self.arch == "mpt" else 3) * d * self.intermediate
        return 2 * d * d + 2 * d * head * self.kv_heads + mlp


class ModelSpec(Strict):
    """A base model: exactly one of a hub id, a local path, or a tiny factory config."""

    hf: str | None = None
    revision: str | None = None
    path: str | None = None
    tiny: TinyModel | None = None
    tokenizer: str | None = Field(None, description="Tokenizer hub id or path when it differs from the model's.")
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        return exactly_one(self, "hf", "path", "tiny")


# ---------------------------------------------------------------- datasets


class Expect(Strict):
    """What the planner assumes of a hub dataset before `prepare` has measured it (GPU-hour estimates)."""

    rows: int = Field(gt=0, le=MAX_ROWS)
    tokens_mean: float = Field(
        gt=0, le=MAX_TOKENS, description="Mean tokens per row: a dataset's prompt and response, a prompt set's prompt."
    )


class Source(Strict):
    """Where rows come from: a hub dataset (`hf`) or a local JSON Lines file (`jsonl`).

    `jsonl` may be `fixture:NAME` for files shipped in `limit/fixtures/` (so pods have them too).
    Rows are normalised to (prompt, response): `prompt`/`response` name the fields; for LIMA-style rows
    `conversations` names a list of turns (alternately the user's and the assistant's) and only single-turn
    rows (two turns) are kept unless `turns` says otherwise. `messages` names a list of {role, content}
    (system, user, assistant: tulu-3, ultrachat and most current SFT sets); with it `turns` must say what a
    multi-turn row becomes: `all` keeps every exchange (template: chat), `first` keeps the first one.
    `templated: true` means the prompt already holds the instruction template (mosaicml datasets).
    `data_files` reads files of the hub repo directly (`data_files: train.jsonl`): for repos whose loading
    script `datasets` no longer runs (GAIR/lima ships one).
    """

    hf: str | None = None
    name: str | None = None
    revision: str | None = None
    data_files: str | None = None
    jsonl: str | None = None
    split: str = "train"
    prompt: str = "prompt"
    response: str = "response"
    conversations: str | None = None
    messages: str | None = None
    turns: Literal["first", "all"] | None = None
    templated: bool = True
    expect: Expect | None = Field(None, exclude=True)  # a planning hint: not part of the prepare step's key

    @model_validator(mode="after")
    def _one_location(self) -> Source:
        exactly_one(self, "hf", "jsonl")
        if self.data_files and not self.hf:
            raise ValueError("data_files names files of a hub dataset: give hf too")
        if self.messages and self.conversations:
            raise ValueError("give one of messages (a list of {role, content}) and conversations (a list of turns)")
        if self.messages and self.turns is None:
            raise FieldError("turns", "messages: say what a multi-turn row becomes: all (every exchange) or first")
        if self.turns and not (self.messages or self.conversations):
            raise FieldError("turns", "turns applies to messages or conversations rows")
        return self

    absent_when: ClassVar[dict[str, tuple]] = {"messages": (None,), "turns": (None,)}  # prepare keys as before chat


class Subset(Strict):
    """Seeded random rows of another dataset; a list of sizes is a sweep: one dataset per size, named
    `<of>-<size>` (1000 -> `1k`), each the first rows of one seeded permutation (so they are nested)."""

    of: str
    sample: Annotated[int, Field(gt=0, le=MAX_ROWS)] | list[Annotated[int, Field(gt=0, le=MAX_ROWS)]]
    seed: Seed = 17

    @field_validator("sample")
    @classmethod
    def _sizes(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("a list of sizes needs distinct sizes")
        return value


class DatasetSpec(Strict):
    """One of: `source` (load), `subset` (seeded random rows of another dataset), `mix` (concatenation)."""

    source: Source | None = None
    subset: Subset | None = None
    mix: list[str] | None = None
    decontaminate: bool = Field(
        False,
        description="Drop the rows sharing a 13-gram with a gauntlet benchmark or judge prompt set (the "
        "contamination step's rule): a new dataset, whose prepare manifest says how many and why.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> DatasetSpec:
        exactly_one(self, "source", "subset", "mix")
        if self.mix is not None and len(self.mix) < 2:
            raise ValueError("a mix needs at least two datasets")
        return self


# ---------------------------------------------------------------- training


class LoraSpec(Strict):
    """Low-rank adapters (peft's LoRA) on the base's linear layers; the base's own weights stay frozen."""

    r: int = Field(8, gt=0, le=4096, description="Rank of each adapter.")
    alpha: float = Field(16.0, gt=0, description="Scale: the adapter's update is multiplied by alpha / r.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapters' input.")
    target_modules: Literal["all-linear"] | list[Annotated[str, Field(min_length=1)]] = Field(
        "all-linear",
        description="Module names to adapt (MPT: Wqkv, out_proj, up_proj, down_proj), or every linear layer "
        "but the output head (peft's all-linear).",
    )

    @field_validator("target_modules")
    @classmethod
    def _some_modules(cls, value):
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("name distinct modules, at least one (or all-linear)")
        return value


class TrainSpec(Strict):
    """Finetuning hyperparameters. Defaults are the paper's MPT-7B recipe."""

    method: Literal["full", "lora"] = Field(
        "full", description="full: every weight trains; lora: only low-rank adapters (`lora`), merged at export."
    )
    lora: LoraSpec | None = Field(None, description="method lora: the adapters (defaults when unset).")
    optimizer: Literal["decoupled_adamw", "decoupled_lionw"] = "decoupled_adamw"
    lr: float = Field(5e-6, gt=0)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.99)
    eps: float = Field(1e-8, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    global_batch_size: int = Field(48, gt=0, le=MAX_BATCH * 64)
    micro_batch_size: int = Field(1, gt=0, le=MAX_BATCH)
    max_seq_len: int = Field(2048, gt=0, le=MAX_TOKENS)
    epochs: int = Field(10, gt=0, le=MAX_EPOCHS, strict=True)  # strict: YAML's `true` is not 1 epoch
    checkpoint_every: int = Field(
        1,
        gt=0,
        le=MAX_EPOCHS,
        description="Epochs between checkpoints, each scored on the gauntlet; the last one always is.",
    )
    warmup_steps: int = Field(50, ge=0, le=10**7)
    grad_clip: float = Field(1.0, gt=0)
    precision: Literal["bf16", "fp32"] = "bf16"
    seed: Seed = 17
    gpus: int = Field(0, ge=0, le=1024, description="GPUs for the finetune pod; 0 trains on CPU.")
    cpu_processes: int = Field(
        0,
        ge=0,
        le=64,
        description="With gpus 0: train the GPU way (torchrun, DeepSpeed ZeRO, rank 0 locks, tracks and commits) "
        "with this many CPU processes standing in for GPUs, to check a spec or the distributed path without any.",
    )
    zero_stage: Literal["auto", 0, 1, 2, 3] = Field(
        "auto",
        description="DeepSpeed ZeRO stage when gpus or cpu_processes > 0; auto: the planner's choice (2 if it fits, "
        "else 3).",
    )
    gradient_checkpointing: bool = False
    attention: Literal["auto", "flex", "sdpa", "eager", "flash"] = Field(
        "auto",
        description="MPT: auto is flex on CUDA, sdpa on CPU; eager is transformers' own. RoPE families: "
        "transformers' kernels with a document mask; auto is flash (flash-attention varlen) on CUDA where "
        "flash_attn is installed, else sdpa. The finetune's summary names the kernel it ran.",
    )
    packing: bool = Field(True, description="Concatenate each micro-batch's rows into one row: no padding.")
    pad_to_max: bool = Field(False, description="Pad every row to max_seq_len, as the paper did (packing: false).")
    keep: Literal["all", "selected"] = Field(
        "all",
        exclude=True,  # read by `select`, which prunes; not part of the finetune's input or key
        description="Epoch weights kept in the artifact store: all, or only the epoch `select` chose.",
    )

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainSpec:
        per_step = self.micro_batch_size * max(self.ranks, 1)
        if self.global_batch_size % per_step:
            ranks = "cpu_processes" if self.cpu_processes else "gpus"
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size x {ranks} = "
                f"{per_step}"
            )
        if self.pad_to_max and self.packing:
            raise ValueError("pad_to_max pads every row to max_seq_len: set packing: false with it")
        return self

    @model_validator(mode="before")
    @classmethod
    def _lora_defaults(cls, data: Any) -> Any:
        """method lora without `lora`: the default adapters, written out (the step's input names what trains)."""
        if isinstance(data, dict) and data.get("method") == "lora" and data.get("lora") is None:
            return {**data, "lora": {}}
        return data

    @model_validator(mode="after")
    def _lora_with_its_method(self) -> TrainSpec:
        if self.lora is not None and self.method != "lora":
            raise ValueError("lora configures method lora: set method: lora with it, or drop lora")
        return self

    @model_validator(mode="after")
    def _cpu_processes_can_train(self) -> TrainSpec:
        if not self.cpu_processes:
            return self
        if self.gpus:
            raise ValueError("cpu_processes stands in for GPUs: set gpus 0 with it, or drop cpu_processes")
        if self.precision == "bf16":
            raise ValueError("cpu_processes: bf16 needs CUDA (transformers refuses it on CPU): set precision fp32")
        if self.attention == "flex":
            raise ValueError("cpu_processes: flex attention has no CPU backward: set attention sdpa (or auto)")
        return self

    # Left out at these values: every other finetune's input, hence its key, as before these fields existed.
    absent_when: ClassVar[dict[str, tuple]] = {"cpu_processes": (0, None), "method": ("full",), "lora": (None,)}

    def checkpoint_epochs(self) -> list[int]:
        """The epochs that leave a checkpoint (and a gauntlet step): every `checkpoint_every`, and the last."""
        every = self.checkpoint_every
        return [e for e in range(1, self.epochs + 1) if e % every == 0 or e == self.epochs]

    @property
    def ranks(self) -> int:
        """Processes the finetune trains with under torchrun and DeepSpeed (0: one process, no DeepSpeed)."""
        return self.gpus or self.cpu_processes

    @property
    def accumulation(self) -> int:
        """Micro-batches per optimizer step on each process."""
        return self.global_batch_size // (self.micro_batch_size * max(self.ranks, 1))


class Training(Strict):
    defaults: dict[str, Any] = Field(default_factory=dict)
    models: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Overrides per base model.")


class RunSpec(Strict):
    """A finetune of `model` on `dataset` (a dataset, or a size sweep: one run per size); `seeds` makes
    training-seed replicates (`<name>-s<seed>`, each with `train.seed` set)."""

    model: str
    dataset: str
    name: str | None = None
    train: dict[str, Any] = Field(default_factory=dict, description="Overrides for this run only.")
    seeds: list[int] | None = Field(None, min_length=1, description="Training seeds: one replicate run each.")

    @property
    def run_name(self) -> str:
        return self.name or f"{self.model}-{self.dataset}"


# ---------------------------------------------------------------- evaluation


class GauntletSpec(Strict):
    """Eval Gauntlet: `suite` names a benchmark set in `limit.gauntlet.benchmarks` ('v0', 'tiny')."""

    suite: str = "v0"
    tasks: list[str] | None = Field(None, description="A subset of the suite's benchmarks; all when unset.")
    data: str = Field(
        "../shared/gauntlet_data",
        description="Folder, s3:// prefix, 'fixture:NAME' or 'llm-foundry@<commit>' holding the gauntlet jsonl "
        "files; several, comma-separated, are searched in order.",
    )
    limit: int | None = Field(
        None, gt=0, le=MAX_ROWS, description="At most this many examples per benchmark (smoke runs)."
    )
    select_limit: int | None = Field(
        None,
        gt=0,
        le=MAX_ROWS,
        description="Score intermediate checkpoints on the first N rows of every benchmark (to select an epoch), "
        "and only the chosen epoch (and baselines) on the whole suite: cheaper, with a wider selection error.",
    )
    selection_split: bool = Field(
        True,
        exclude=True,  # it changes how select chooses, not how a gauntlet step scores: not in gauntlet keys
        description="Choose each finetune's epoch on a seeded half of every benchmark's rows (`seed`) and show "
        "the chosen epoch on the other half too, with its rank there: the choice's optimism. false: choose on "
        "all rows, as the paper did.",
    )
    batch_size: int = Field(8, gt=0, le=MAX_BATCH)
    backend: Literal["hf", "packed", "vllm"] = Field(
        "packed",
        description="packed: lm-eval's HFLM scoring unpadded rows, each context once for all its continuations "
        "(MPT and the RoPE families; same log-likelihoods as hf, rows of batch_size x the model's max length tokens); "
        "hf: lm-eval's "
        "HFLM as is; vllm: lm-eval's VLLM with prefix caching.",
    )
    batch_tokens: int | None = Field(
        None,
        gt=0,
        le=MAX_BATCH * 2**16,
        description="packed: tokens per forward; unset: batch_size x the model's max length.",
    )
    attention: Literal["auto", "sdpa", "flex"] = Field("auto", description="packed: MPT's attention (see training).")
    max_length: int | None = Field(
        None,
        gt=0,
        le=MAX_TOKENS,
        description="Longest context + continuation scored (lm-eval's max_length: contexts are left-truncated to "
        "it); unset: the model's own (a 128k-token Llama's would make rows of 128k-token documents).",
    )
    seed: Seed = 1234

    absent_when: ClassVar[dict[str, tuple]] = {"max_length": (None,)}  # other gauntlets' keys as before it

    @field_validator("data")
    @classmethod
    def _locations(cls, value: str) -> str:
        parse_locations(value)  # refused here, at plan time, not in a pod after the finetunes
        return value

    @property
    def locations(self) -> list[Location]:
        return parse_locations(self.data)


class PromptSet(Strict):
    """Judge prompts: a hub dataset split, a jsonl (field `prompt`), or the authors' release text file.

    `data_files` reads files of the hub repo directly, as for `Source` (GAIR/lima ships a loading script).
    """

    hf: str | None = None
    data_files: str | None = None
    split: str = "test"
    jsonl: str | None = None
    release_txt: str | None = None
    field: str = "conversations"
    templated: bool = False
    limit: int | None = Field(None, gt=0, le=MAX_ROWS)
    expect: Expect | None = Field(None, exclude=True)  # a planning hint, as a Source's: not in generate keys

    @model_validator(mode="after")
    def _one_location(self) -> PromptSet:
        return exactly_one(self, "hf", "jsonl", "release_txt")


class Generation(Strict):
    seeds: list[Seed] = Field(default_factory=lambda: [1, 2, 3], min_length=1, max_length=MAX_SEEDS)
    temperature: float = Field(0.9, ge=0, le=100)
    top_p: float = Field(1.0, gt=0, le=1)
    max_total_tokens: int = Field(2048, gt=0, le=MAX_TOKENS, description="Prompt plus response, as in the paper.")
    max_new_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS)
    batch_size: int = Field(8, gt=0, le=MAX_BATCH)
    backend: Literal["hf", "vllm"] = "hf"
    max_failure_rate: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Largest share of a seed's responses whose sampling may fail (an error, not an answer) for "
        "the step to complete; above it the step ends retryable (exit 75) and a rerun samples only those.",
    )

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"seed {repeated[0]} is given twice")
        return seeds


class Pair(Strict):
    a: str
    b: str
    prompts: str


CALIBRATION_RELEASE = "../shared/limit_release"  # beside the checkout, like the gauntlet's default data
# The platform's own credentials (artifact store, hub, MLflow, Argo): a spec chooses the judge's base_url, so
# naming one of these as the judge key would send it to a server of the spec author's choosing.
PLATFORM_CREDENTIALS = ("AWS_*", "HF_*", "HUGGING_FACE_*", "MLFLOW_*", "ARGO_*", "MINIO_*")


class JudgeSpec(Strict):
    backend: Literal["openai", "local"] = "openai"
    annotator: str = "alpaca_eval_gpt4_0613"
    model: str = "gpt-4-0613"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(4, gt=0, le=256)
    max_retries: int = Field(5, ge=0, le=100)
    retry_wait: float = Field(2.0, ge=0, le=3600, description="Seconds before the first retry; doubles, at most 8x.")
    local_model: str | None = Field(None, description="For backend 'local': a key of `models`.")
    bootstrap: int = Field(1000, ge=0, le=100_000, description="Resamples of each win rate's interval (0: none).")
    bootstrap_seed: Seed = Field(0, description="Seeds every bootstrap interval: the judge steps' and the report's.")
    max_failure_rate: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Largest share of the judgments that may fail for the step to complete; above it the step "
        "ends retryable (exit 75), commits nothing, and a rerun asks only for the failed judgments.",
    )
    calibrate: int | None = Field(
        None,
        ge=0,
        le=10_000,
        description="Released GPT-4-0613 verdicts (the LIMIT authors' release) the judge is asked before the "
        "study's own, to report its agreement with GPT-4-0613 (a calibrate step). Unset or 0: none; the release "
        "must be readable where the plan is made and where the step runs.",
    )
    calibration_release: str = Field(
        CALIBRATION_RELEASE, description="The authors' release folder the calibration pairs are drawn from."
    )

    # unset, the calibration leaves the judge's dump (and so every judge step's key) as before it
    absent_when: ClassVar[dict[str, tuple]] = {"calibrate": (None,), "calibration_release": (CALIBRATION_RELEASE,)}

    @field_validator("api_key_env")
    @classmethod
    def _judge_key_only(cls, name: str) -> str:
        # *_API_KEY only: *_TOKEN admitted GITHUB_TOKEN and the like, which the spec's base_url would receive
        allowed = re.fullmatch(r"[A-Z][A-Z0-9_]*_API_KEY", name) is not None
        if not allowed or any(fnmatchcase(name, p) for p in PLATFORM_CREDENTIALS):
            raise ValueError(
                f"'{name}' is not a judge key: name an upper-case variable matching *_API_KEY other than the "
                f"platform's credentials ({', '.join(PLATFORM_CREDENTIALS)})"
            )
        return name

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{url}' is not an http(s) URL with a host (e.g. https://judge.example/v1)")
        return url

    def calibration_pairs(self) -> int:
        """How many released verdicts to ask (opt-in: the release is a local folder pods do not have yet)."""
        return self.calibrate or 0

    def judging(self) -> JudgeSpec:
        """The settings a judge step depends on: calibrating the judge never changes its judgments' key."""
        return self.model_copy(update={"calibrate": None, "calibration_release": CALIBRATION_RELEASE})

    def plain_http_host(self) -> str | None:
        """The host the judge's key would reach unencrypted (http to a host other than loopback), if any."""
        parts = urlsplit(self.base_url or "")
        if parts.scheme == "http" and not _loopback(parts.hostname or ""):
            return parts.hostname
        return None


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ContaminationSpec(Strict):
    """A contamination step per training dataset: the share of its rows that share a 13-gram with a gauntlet
    benchmark's items or a judge prompt set (limit/data/contamination.py)."""

    check: bool = Field(False, description="Add the step for every dataset a run trains on.")
    min_shared: int = Field(1, ge=1, le=1000, description="13-grams a row must share to count (GPT-3, lm-eval: 1).")


class Resources(Strict):
    """What one step's pod asks the cluster for (the local backend uses `cpu` for its slots)."""

    cpu: float = Field(1, gt=0, le=MAX_CPU)
    memory: str = "4Gi"
    gpus: int = Field(0, ge=0, le=1024)
    shm: str | None = Field(None, description="Memory-backed /dev/shm (NCCL, dataloader workers).")
    disk: str | None = Field(
        None, description="Ephemeral storage for the work folder (checkpoints, caches); finetunes: the planner's."
    )

    @field_validator("memory", "shm", "disk")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None and parse_quantity(value) <= 0:
            raise ValueError(f"'{value}' must be more than 0")
        return value


class Study(Strict):
    # 50: the Argo workflow is generated as "limit-<name>-", at most 63 characters
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=50)
    description: str = ""
    models: dict[str, ModelSpec]
    datasets: dict[str, DatasetSpec]
    stats_tokenizer: str | None = Field(None, description="Model whose tokenizer counts dataset tokens.")
    template: Literal["paper", "chat"] = Field(
        "paper",
        description="How a conversation becomes text, alike in prepare, training, generation and judging: paper "
        "(the LIMIT paper's instruction template, one exchange) or chat (each base tokenizer's own chat template; "
        "loss on the assistant's turns).",
    )
    training: Training = Field(default_factory=Training)
    runs: list[RunSpec] = Field(min_length=1)
    baselines: list[str] = Field(default_factory=list)
    gauntlet: GauntletSpec = Field(default_factory=GauntletSpec)
    prompts: dict[str, PromptSet] = Field(default_factory=dict)
    generation: Generation = Field(default_factory=Generation)
    judge: JudgeSpec = Field(default_factory=JudgeSpec)
    pairs: list[Pair] = Field(default_factory=list)
    contamination: ContaminationSpec = Field(default_factory=ContaminationSpec)
    resources: dict[str, Resources] = Field(default_factory=dict, description="Per step kind.")
    # Set by `expand`, never written in a spec: each expanded run's origin (size series, replicate group, seed).
    _origins: dict[str, RunOrigin] = PrivateAttr(default_factory=dict)
    _trains: dict[str, TrainSpec] = PrivateAttr(default_factory=dict)  # each run's, resolved once

    @model_validator(mode="after")
    def _references(self) -> Study:
        groups = dataset_groups(self.datasets)
        self._check_datasets(groups)
        runs = self._check_runs(groups)
        for i, base in enumerate(self.baselines):
            _known(base, self.models, "model", f"baselines.{i}")
        for name in self.training.models:
            _known(name, self.models, "model", f"training.models.{name}")
        if self.stats_tokenizer:
            _known(self.stats_tokenizer, self.models, "model", "stats_tokenizer")
        self._check_pairs(runs, groups)
        self._check_template()
        if self.pairs and self.judge.backend == "local":
            if not self.judge.local_model:
                raise FieldError("judge.local_model", "backend 'local' needs local_model")
            _known(self.judge.local_model, self.models, "model", "judge.local_model")
        self._distinct_slugs(runs)
        return self

    def _check_datasets(self, groups: dict[str, list[tuple[str, str]]]) -> None:
        for name, ds in self.datasets.items():
            if ds.subset:
                _known(ds.subset.of, self.datasets, "dataset", f"datasets.{name}.subset.of")
                if ds.subset.of in groups:
                    raise FieldError(f"datasets.{name}.subset.of", f"'{ds.subset.of}' is a size sweep, not a dataset")
            for i, member in enumerate(ds.mix or []):
                _known(member, _dataset_names(self.datasets, groups), "dataset", f"datasets.{name}.mix.{i}")
            if len([m for m in ds.mix or [] if m in groups]) > 1:
                raise FieldError(f"datasets.{name}.mix", "a mix may name one size sweep at most")
            for concrete, _ in groups.get(name, []):
                if concrete in self.datasets and concrete != name:
                    raise FieldError(f"datasets.{name}", f"expands to '{concrete}', which is another dataset")
        _check_acyclic(self.datasets, groups)

    def _check_runs(self, groups: dict[str, list[tuple[str, str]]]) -> list[RunSpec]:
        """The runs the spec's runs expand into, each checked: known model and dataset, unique name, valid
        training settings (an error names the run as written)."""
        for i, run in enumerate(self.runs):
            _known(run.model, self.models, "model", f"runs.{i}.model")
            _known(run.dataset, _dataset_names(self.datasets, groups), "dataset", f"runs.{i}.dataset")
        names: set[str] = set()
        concrete = []
        for i, run in concrete_runs(self.runs, groups):
            if run.run_name in names or run.run_name in self.models:
                raise FieldError(f"runs.{i}.name", f"duplicate run name '{run.run_name}'")
            names.add(run.run_name)
            self.train_spec(run, field=f"runs.{i}.train")
            concrete.append(run)
        return concrete

    def _check_pairs(self, runs: list[RunSpec], groups: dict[str, list[tuple[str, str]]]) -> None:
        judged = [run.run_name for run in runs] + self.baselines
        replicates = replicate_groups(self.runs, groups)
        expanded = {i for i, _ in concrete_pairs(self.pairs, judged, replicates)}
        for i, pair in enumerate(self.pairs):
            _known(pair.prompts, self.prompts, "prompt set", f"pairs.{i}.prompts")
            for side in ("a", "b"):
                if not _side(getattr(pair, side), judged, replicates):
                    raise FieldError(
                        f"pairs.{i}.{side}",
                        f"'{getattr(pair, side)}' names no run or baseline (known: {', '.join(sorted(judged))})",
                    )
            if i not in expanded:
                raise FieldError(f"pairs.{i}.b", "a model cannot be judged against itself")

    def _check_template(self) -> None:
        """The paper's template holds one exchange; a chat template must exist (known here for tiny models)."""
        for name, ds in self.datasets.items():
            if self.template == "paper" and ds.source and ds.source.turns == "all":
                raise FieldError(
                    f"datasets.{name}.source.turns",
                    "all keeps multi-turn rows, which the paper's template cannot hold: set template: chat, or turns: "
                    "first",
                )
        if self.template != "chat":
            return
        stats = self.stats_tokenizer or next(iter(self.models))
        for name in dict.fromkeys([*(run.model for run in self.runs), *self.baselines, stats]):
            tiny = self.models[name].tiny
            if tiny is not None and not tiny.chat_template:
                raise FieldError(
                    f"models.{name}.tiny.chat_template",
                    "template: chat, but this tokenizer has no chat template: set chat_template: true",
                )

    def _distinct_slugs(self, runs: list[RunSpec]) -> None:
        """Names become step names through `slug`: two names one slug apart would be one step."""
        judged = [(f"runs.{i}.name", run.run_name) for i, run in enumerate(runs)]
        judged += [(f"baselines.{i}", name) for i, name in enumerate(self.baselines)]
        for group in (
            [(f"datasets.{name}", name) for name in self.datasets],
            judged,
            [(f"prompts.{name}", name) for name in self.prompts],
        ):
            seen: dict[str, tuple[str, str]] = {}
            for field, name in group:
                key = slug(name)
                if not key:
                    raise FieldError(field, f"'{name}' has no letter or digit to name its steps with")
                if len(key) > MAX_NAME:  # three of them name a judge step, its log file (255 bytes at most)
                    raise FieldError(field, f"'{name[:24]}...' is {len(key)} characters: at most {MAX_NAME}")
                if key in seen and seen[key][1] != name:
                    other_field, other = seen[key]
                    raise FieldError(
                        field, f"'{name}' and '{other}' ({other_field}) both become '{key}' in step names: rename one"
                    )
                seen.setdefault(key, (field, name))

    def train_spec(self, run: RunSpec, field: str = "runs.train") -> TrainSpec:
        """Defaults, then the base model's overrides, then the run's own (`field`: where those are written),
        resolved once per run: validation, the step count, the planner and sizing all read this one object."""
        if run.run_name not in self._trains:
            self._trains[run.run_name] = self._resolve_train(run, field)
        return self._trains[run.run_name]

    def _resolve_train(self, run: RunSpec, field: str) -> TrainSpec:
        """A bad value is looked for layer by layer, so that its error names the layer that holds it."""
        layers = [
            ("training.defaults", self.training.defaults),
            (f"training.models.{run.model}", self.training.models.get(run.model, {})),
            (field, run.train),
        ]
        try:
            return TrainSpec.model_validate({k: v for _, layer in layers for k, v in layer.items()})
        except ValidationError as whole:
            merged: dict[str, Any] = {}
            for where, layer in layers:
                merged |= layer
                try:
                    TrainSpec.model_validate(merged)
                except ValidationError as e:
                    loc, msg = first_error(e)
                    raise FieldError(f"{where}.{loc}" if loc != "(top level)" else where, msg) from None
            raise whole from None

    def origin(self, run: RunSpec) -> RunOrigin:
        """What `expand` recorded of the run (a study never expanded: the run is its own group)."""
        return self._origins.get(run.run_name) or RunOrigin(run.run_name, None, None)

    def run(self, name: str) -> RunSpec:
        return next(r for r in self.runs if r.run_name == name)


def _dataset_names(datasets: dict[str, DatasetSpec], groups: dict[str, list[tuple[str, str]]]) -> set[str]:
    """What a run or a mix may name: the datasets as written, and every size a sweep expands into."""
    return set(datasets) | {concrete for sizes in groups.values() for concrete, _ in sizes}


def _known(value: str, names, what: str, field: str) -> None:
    if value not in names:
        raise FieldError(field, f"unknown {what} '{value}' (known: {', '.join(sorted(names))})")


def _check_acyclic(datasets: dict[str, DatasetSpec], groups: dict[str, list[tuple[str, str]]]) -> None:
    written = {concrete: group for group, sizes in groups.items() for concrete, _ in sizes}

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            raise FieldError(f"datasets.{name}", f"dataset cycle: {' -> '.join((*stack, name))}")
        ds = datasets[written.get(name, name)]
        for child in ([ds.subset.of] if ds.subset else []) + (ds.mix or []):
            visit(written.get(child, child), (*stack, name))

    for name in datasets:
        visit(name, ())


def slug(name: str) -> str:
    """A name safe for DAG task names and Kubernetes labels."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower().replace("+", "-plus-")).strip("-")


# ---------------------------------------------------------------- sweeps and replicates


def size_label(rows: int) -> str:
    """How a size reads in expanded names: 1000 -> '1k', 1500 -> '1500'."""
    return f"{rows // 1000}k" if rows % 1000 == 0 else str(rows)


def dataset_groups(datasets: dict[str, DatasetSpec]) -> dict[str, list[tuple[str, str]]]:
    """(dataset name, size label) of each size a group expands into: a subset with a list of sizes
    (`<of>-<size>`), and a mix naming such a group (its members joined by '+', one mix per size)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, ds in datasets.items():
        if ds.subset and isinstance(ds.subset.sample, list):
            groups[name] = [(f"{ds.subset.of}-{size_label(n)}", size_label(n)) for n in ds.subset.sample]
    for name, ds in datasets.items():
        swept = [m for m in ds.mix or [] if m in groups]
        if swept:
            sizes = groups[swept[0]]
            groups[name] = [
                ("+".join(sizes[i][0] if m == swept[0] else m for m in ds.mix), label)
                for i, (_, label) in enumerate(sizes)
            ]
    return groups


def concrete_datasets(datasets: dict[str, DatasetSpec]) -> dict[str, DatasetSpec]:
    """Every group replaced by the datasets it expands into."""
    groups = dataset_groups(datasets)
    out = {name: ds for name, ds in datasets.items() if name not in groups}
    for name, expanded in groups.items():
        ds = datasets[name]
        for i, (concrete, _) in enumerate(expanded):
            if ds.subset:
                one = Subset(of=ds.subset.of, sample=ds.subset.sample[i], seed=ds.subset.seed)
                out[concrete] = DatasetSpec(subset=one)
            else:
                out[concrete] = DatasetSpec(mix=[groups[m][i][0] if m in groups else m for m in ds.mix])
    return out


class RunOrigin(NamedTuple):
    """Where an expanded run came from: what the report groups and plots it by."""

    group: str  # its name without the seed suffix: the replicates of one setting share it
    series: str | None  # in a size sweep, the run as written (one size curve); else None
    seed: int | None  # its training seed when `seeds` made it a replicate
    written: int | None = None  # its index in the spec's `runs` as written (errors name the field there)


def _expanded_runs(runs: list[RunSpec], groups: dict[str, list[tuple[str, str]]]):
    """(index in the spec, run, origin) of every run a size sweep or a seed list expands into."""
    for i, run in enumerate(runs):
        sizes = groups.get(run.dataset) or [(run.dataset, None)]
        for dataset, label in sizes:
            name = f"{run.name}-{label}" if run.name and label else run.name or f"{run.model}-{dataset}"
            for seed in run.seeds or [None]:
                train = run.train if seed is None else {**run.train, "seed": seed}
                concrete = f"{name}-s{seed}" if seed is not None else name
                origin = RunOrigin(name, run.run_name if label else None, seed, i)
                yield i, RunSpec(model=run.model, dataset=dataset, name=concrete, train=train), origin


def concrete_runs(runs: list[RunSpec], groups: dict[str, list[tuple[str, str]]]) -> list[tuple[int, RunSpec]]:
    """(index in the spec, run) of every run a size sweep or a seed list expands into."""
    return [(i, run) for i, run, _ in _expanded_runs(runs, groups)]


def dataset_rows(datasets: dict[str, DatasetSpec], name: str) -> int | None:
    """How many rows a concrete dataset has as the spec says (a subset's sample, a source's `expect`, a mix's
    sum), else None; `prepare` measures the real count."""
    ds = datasets[name]
    if ds.source:
        return ds.source.expect.rows if ds.source.expect else None
    if ds.subset:
        return ds.subset.sample if isinstance(ds.subset.sample, int) else None
    if ds.mix:
        sizes = [dataset_rows(datasets, member) for member in ds.mix]
        return None if None in sizes else sum(sizes)
    return None


def replicate_groups(runs: list[RunSpec], groups: dict[str, list[tuple[str, str]]]) -> dict[str, list[str]]:
    """A seeded run's name before its seed suffix -> its replicates' names (in seed order)."""
    found: dict[str, list[str]] = {}
    for _, run in concrete_runs([r for r in runs if r.seeds], groups):
        base, _, _ = run.run_name.rpartition("-s")
        found.setdefault(base, []).append(run.run_name)
    return found


def concrete_pairs(pairs: list[Pair], judged: list[str], replicates: dict[str, list[str]]) -> list[tuple[int, Pair]]:
    """(index in the spec, pair) of every pair a pattern or a replicated run expands into. Two replicated
    runs with as many seeds are paired seed by seed; anything else, every name against every name."""
    out = []
    for i, pair in enumerate(pairs):
        side_a, side_b = _side(pair.a, judged, replicates), _side(pair.b, judged, replicates)
        if pair.a in replicates and pair.b in replicates and len(side_a) == len(side_b):
            matched = list(zip(side_a, side_b, strict=True))
        else:
            matched = [(a, b) for a in side_a for b in side_b if a != b]
        out += [(i, Pair(a=a, b=b, prompts=pair.prompts)) for a, b in matched]
    return out


def _side(name: str, judged: list[str], replicates: dict[str, list[str]]) -> list[str]:
    if name in replicates:
        return replicates[name]
    return [j for j in judged if fnmatchcase(j, name)]


def expand(study: Study) -> Study:
    """The study with every size list, seed list and name pattern replaced by the concrete entries it
    means: what the planner plans. (The spec as written was validated with these expansions in mind.)"""
    groups = dataset_groups(study.datasets)
    runs = [run for _, run in concrete_runs(study.runs, groups)]
    judged = [run.run_name for run in runs] + study.baselines
    pairs = [pair for _, pair in concrete_pairs(study.pairs, judged, replicate_groups(study.runs, groups))]
    expanded = study.model_copy(update={"datasets": concrete_datasets(study.datasets), "runs": runs, "pairs": pairs})
    expanded._origins = {run.run_name: origin for _, run, origin in _expanded_runs(study.runs, groups)}
    return expanded


# ---------------------------------------------------------------- loading


def resolve_study_path(study: str) -> Path:
    """A study is a name in `workflows/studies/` or a path to a YAML file."""
    return resolve_named(study, STUDIES_DIR, "study")


def list_studies() -> list[str]:
    return sorted(p.stem for p in STUDIES_DIR.glob("*.yaml"))


def load_study(study: str) -> Study:
    """The study as the planner needs it: validated, with its sweeps and replicates expanded."""
    return expand(load_model(resolve_study_path(study), Study, "study"))
