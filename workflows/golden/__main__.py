"""`make golden`: rewrite the golden manifests with `limit manifest`."""

import sys

from limit.cli import main
from workflows.golden import PROFILES, path

for study, profile in PROFILES.items():
    code = main(["manifest", study, "--profile", profile, "--out", str(path(study))])
    if code:
        sys.exit(code)
