"""What a step function may touch besides its input: its output folder and the artifact store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from limit.execution.store import Store


@dataclass(frozen=True)
class StepContext:
    """Who the step is (`ref`, and the study execution it runs under) and where it reads and writes."""

    ref: str  # "<kind>/<key>"
    out: Path  # write outputs here; may hold what a killed earlier attempt left
    store: Store
    study: str | None = None  # the study of the execution (LIMIT_STUDY), None for a step run on its own
    parent_run_id: str | None = None  # that execution's MLflow parent run (LIMIT_PARENT_RUN_ID)

    @property
    def kind(self) -> str:
        return self.ref.partition("/")[0]

    @property
    def key(self) -> str:
        return self.ref.partition("/")[2]

    @property
    def workdir(self) -> Path:
        """Machine-local cache (materialised tiny models, downloaded inputs)."""
        return self.store.workdir

    def fetch(self, ref: str, sub: str = "") -> Path:
        """Local folder of a completed upstream step's outputs (or one subfolder)."""
        return self.store.fetch(ref, sub)

    def persist(self, sub: str, release: bool = False) -> None:
        """Make `out/sub` durable (in the background), so a retried step can resume from it. `release`: the
        step will not read its local copy again, which the store may then delete (multi-GB epoch weights)."""
        self.store.persist(self.ref, self.out, sub, release)

    def stored(self, sub: str) -> list[str]:
        """Durable files under `sub` (relative to the step's output folder), oldest first."""
        return self.store.stored(self.ref, self.out, sub)

    def restore(self, sub: str) -> None:
        """Bring `sub` of an earlier attempt's durable outputs into `out` (a retried pod starts empty)."""
        self.store.restore(self.ref, self.out, sub)

    def discard(self, sub: str) -> None:
        """Delete `out/sub`, also where `persist` put it (resume state the finished step no longer needs)."""
        self.store.discard(self.ref, self.out, sub)
