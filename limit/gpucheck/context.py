"""What every stage is handed: the device, the smoke flag, a work folder, and where its result goes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CheckContext:
    device: str
    smoke: bool
    workdir: Path
    out: Path
    gauntlet_data: str | None = None

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def save(self, result: dict[str, Any]) -> None:
        """Written after every measurement: a stage stopped at its limit keeps what it had measured."""
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=2, default=str))
        tmp.replace(self.out)
