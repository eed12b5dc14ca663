"""Golden manifests: what `limit manifest` writes for the tiny and full studies, checked by the tests.

Regenerate them on purpose only, with `make golden` (`python -m workflows.golden`), and review the diff.
"""

from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent
PROFILES = {"tiny": "kind", "full": "gpu"}  # study: the profile its golden manifest is rendered with


def path(study: str) -> Path:
    return GOLDEN_DIR / f"{study}.yaml"
