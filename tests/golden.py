"""Golden manifests: what `limit manifest` writes for the tiny and full studies, checked by the tests.

Regenerate them on purpose only, with `make golden` (`python tests/golden.py`), and review the diff.
"""

from __future__ import annotations

import sys
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "workflows" / "golden"
PROFILES = {"tiny": "kind", "full": "gpu"}  # study: the profile its golden manifest is rendered with


def path(study: str) -> Path:
    return GOLDEN_DIR / f"{study}.yaml"


def regenerate() -> int:
    from limit.cli import main

    for study, profile in PROFILES.items():
        code = main(["manifest", study, "--profile", profile, "--out", str(path(study))])
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(regenerate())
