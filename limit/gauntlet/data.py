"""Where the gauntlet's jsonl files come from, turned into a local folder.

A location (parsed by `limit.execution.locations.parse_locations`, where the spec validates it) is one of:
- a folder (`../shared/gauntlet_data`), laid out as `<category>/<name>.jsonl` like llm-foundry's local_data;
- `fixture:NAME`, a folder shipped inside the package (`fixture:gauntlet` holds the tiny suite);
- `s3://bucket/prefix`, read with boto3 (which honours AWS_ENDPOINT_URL, e.g. MinIO);
- `llm-foundry@<commit>`, the files of mosaicml/llm-foundry's `scripts/eval/local_data/` at that commit (all
  40 hex digits: raw file hosts need not resolve a short one, and nothing is looked up before a pod runs),
  fetched from GitHub's raw file host (or the mirror LIMIT_LLM_FOUNDRY_RAW names).
Several locations may be given, separated by commas (`../shared/gauntlet_data,runs/gauntlet-converted`):
each file comes from the first one that has it. Remote files are cached under the work folder; a file
absent everywhere is reported missing, not an error, so its category comes out incomplete.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from limit.errors import LimitError, UnavailableError
from limit.execution.io import write_atomic
from limit.execution.locations import Location

LLM_FOUNDRY_RAW = "https://raw.githubusercontent.com/mosaicml/llm-foundry/{commit}/scripts/eval/local_data/{file}"
RAW_URL_ENV = "LIMIT_LLM_FOUNDRY_RAW"  # a mirror of GitHub's raw host, same {commit} and {file} placeholders


def fetch_files(locations: list[Location], files: list[str], workdir: Path) -> dict[str, Path]:
    """Local paths of those `files` (relative names) found at the first of `locations` that has each."""
    found: dict[str, Path] = {}
    for location in locations:
        found |= _fetch_one(location, [f for f in files if f not in found], workdir)
    return found


def _fetch_one(location: Location, files: list[str], workdir: Path) -> dict[str, Path]:
    if location.kind == "s3":
        return _fetch_s3(location.value, files, workdir)
    if location.kind == "llm-foundry":
        return _fetch_llm_foundry(location.value, files, workdir)
    folder = location.path
    if not folder.is_dir():
        raise LimitError(f"gauntlet.data: folder not found: {location}")
    return {f: folder / f for f in files if (folder / f).is_file()}


def _cache_dir(workdir: Path, *parts: str) -> Path:
    return Path(workdir) / "gauntlet-data" / Path(*parts)


def _fetch_s3(location: str, files: list[str], workdir: Path) -> dict[str, Path]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    cache = _cache_dir(workdir, "s3", bucket, prefix)
    client = boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)
    found = {}
    for name in files:
        key = f"{prefix}/{name}" if prefix else name
        target = cache / name
        if not target.is_file():
            try:
                body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except NoCredentialsError:
                raise LimitError(
                    f"gauntlet.data: s3://{bucket}/{key}: no S3 credentials (AWS_ACCESS_KEY_ID ...)"
                ) from None
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    continue
                raise UnavailableError(f"gauntlet.data: s3://{bucket}/{key}: {e}") from None
            except BotoCoreError as e:  # the endpoint could not be reached
                raise UnavailableError(f"gauntlet.data: s3://{bucket}/{key}: {e}") from None
            write_atomic(target, body)
        found[name] = target
    return found


def _fetch_llm_foundry(commit: str, files: list[str], workdir: Path) -> dict[str, Path]:
    cache = _cache_dir(workdir, f"llm-foundry-{commit}")
    found = {}
    for name in files:
        target = cache / name
        if not target.is_file():
            url = os.environ.get(RAW_URL_ENV, LLM_FOUNDRY_RAW).format(commit=commit, file=name)
            print(f"gauntlet: fetching {url}", file=sys.stderr)
            try:
                with urllib.request.urlopen(url, timeout=120) as response:
                    data = response.read()
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    continue
                error = UnavailableError if e.code >= 500 or e.code == 429 else LimitError
                raise error(f"gauntlet.data: {url}: HTTP {e.code}") from None
            except (urllib.error.URLError, TimeoutError) as e:
                raise UnavailableError(f"gauntlet.data: cannot fetch {url}: {getattr(e, 'reason', e)}") from None
            write_atomic(target, data)
        found[name] = target
    return found
