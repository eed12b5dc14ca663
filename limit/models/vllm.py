"""Which models the `vllm` backends (gauntlet.backend, generation.backend) may be given.

The `vllm` extra pins vLLM 0.28.0, the last release that runs MPT: 0.29.0 lists MptForCausalLM and
MPTForCausalLM among its previously supported architectures. A model is checked by the `architectures` of
its config.json before vLLM is imported or built, so an unsupported one ends in one line naming the field,
the architecture and the vLLM version, not in a traceback from deep inside vLLM's engine start-up.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from limit.errors import LimitError, UnavailableError, is_transient

VLLM_PIN = "0.28.0"
# transformers' MPT class, and MosaicML's own remote-code class named in mosaicml/mpt-* config.json files:
# vLLM 0.28.0's registry maps both to its MPT implementation.
ARCHITECTURES = frozenset({"MptForCausalLM", "MPTForCausalLM"})


def vllm_version() -> str:
    """The installed vLLM's version, or the pinned one where vLLM is not installed."""
    try:
        return metadata.version("vllm")
    except metadata.PackageNotFoundError:
        return VLLM_PIN


def _config_json(location: str, revision: str | None) -> Path:
    local = Path(location).expanduser()
    if local.is_dir():
        return local / "config.json"
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(hf_hub_download(location, "config.json", revision=revision))
    except LocalEntryNotFoundError:  # the hub was unreachable and nothing is cached
        raise UnavailableError(f"{location}: the hub cannot be reached for its config.json") from None
    except (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError) as e:
        raise LimitError(f"{location}: no config.json on the hub ({type(e).__name__})") from None
    except Exception as e:
        error = UnavailableError if is_transient(e) or isinstance(e, ConnectionError) else LimitError
        raise error(f"{location}: cannot read config.json from the hub: {type(e).__name__}") from None


def architectures(location: str, revision: str | None = None) -> list[str]:
    """The `architectures` named in a model's config.json (a local folder or a hub id)."""
    path = _config_json(location, revision)
    try:
        return list(json.loads(path.read_text()).get("architectures") or [])
    except (OSError, ValueError) as e:
        raise LimitError(f"{location}: cannot read {path.name}: {e}") from None


def require_supported(location: str, field: str, revision: str | None = None) -> None:
    """Refuse, in one line naming `field`, a model the pinned vLLM is not used for here."""
    found = architectures(location, revision)
    if not found or not set(found) <= ARCHITECTURES:
        named = ", ".join(found) or "no architectures in config.json"
        raise LimitError(
            f"{field}: vllm {vllm_version()} is not used for {named} ({location}); it runs "
            f"{', '.join(sorted(ARCHITECTURES))} here: use the hf backend for other models"
        )
