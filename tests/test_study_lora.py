"""tiny-lora end to end through the local backend, cut to one epoch and no judged pair (the judge's path is
tiny's own, and generation under the chat template is tests/test_chat.py's): a full and a LoRA finetune of one
base on chat-format data, each epoch scored by the gauntlet from its plain (merged) checkpoint, both in the
report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_study_local import limit_run

from limit.spec.study import STUDIES_DIR

pytestmark = pytest.mark.slow


def test_tiny_lora_reports_a_lora_and_a_full_finetune_of_one_base(tmp_path: Path):
    data = yaml.safe_load((STUDIES_DIR / "tiny-lora.yaml").read_text())
    data["training"]["defaults"]["epochs"] = 1
    data["gauntlet"]["limit"] = 4
    for name in ("prompts", "pairs", "judge", "generation"):
        data.pop(name)
    spec = tmp_path / "tiny-lora.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    workdir = tmp_path / "runs"

    result = limit_run(str(spec), workdir)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((workdir / "tiny-lora" / "report.json").read_text())
    text = json.dumps(report)
    assert "tiny-full" in text and "tiny-lora" in text
    manifests = [json.loads(p.read_text()) for p in (workdir / "artifacts" / "finetune").glob("*/_manifest.json")]
    methods = sorted(m["summary"]["method"] for m in manifests)
    assert methods == ["full", "lora"]
    trainable = {m["summary"]["method"]: m["summary"]["trainable_params"] for m in manifests}
    assert trainable["lora"] < trainable["full"] / 10
