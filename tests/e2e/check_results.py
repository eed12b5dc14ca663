"""After the kind e2e's workflow succeeded: MLflow holds the study's parent run (closed, with the report) and
a child run with metrics for every step, and MinIO holds the report at its content-addressed key."""

from __future__ import annotations

import argparse
import json
import sys

import boto3
import mlflow

from limit.execution.tracking import experiment_name
from limit.plan import build_plan
from limit.spec.study import load_study


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--study", required=True)
    parser.add_argument("--workflow", required=True)
    parser.add_argument("--mlflow", required=True)
    parser.add_argument("--s3-endpoint", required=True)
    parser.add_argument("--artifacts", required=True, help="the profile's s3://bucket/prefix")
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    args = parser.parse_args()
    plan = build_plan(load_study(args.study))
    problems: list[str] = []

    client = mlflow.MlflowClient(tracking_uri=args.mlflow)
    experiment = client.get_experiment_by_name(experiment_name(args.study))
    if experiment is None:
        return fail([f"MLflow has no experiment {experiment_name(args.study)}"])
    parents = client.search_runs([experiment.experiment_id], filter_string=f"tags.`limit.workflow` = '{args.workflow}'")
    if not parents:
        return fail([f"MLflow has no parent run tagged limit.workflow={args.workflow}"])
    parent = parents[0]
    if parent.info.status != "FINISHED":
        problems.append(f"parent run {parent.info.run_id} is {parent.info.status}, not FINISHED")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    if "report.json" not in artifacts:
        problems.append(f"parent run has no report.json artifact (has {sorted(artifacts)})")

    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    kinds = [c.data.tags.get("limit.kind") for c in children]
    for kind in sorted({s.kind for s in plan.order()}):
        expected = len(plan.by_kind(kind))
        if kinds.count(kind) < expected:
            problems.append(f"{kinds.count(kind)} child runs of kind {kind}, expected {expected}")
    models = len(plan.steps["report"].input.models)
    if kinds.count("summary") != models:
        problems.append(f"{kinds.count('summary')} summary runs, expected one per model ({models})")
    for kind in ("finetune", "gauntlet", "judge"):
        if not any(c.data.metrics for c in children if c.data.tags.get("limit.kind") == kind):
            problems.append(f"no {kind} child run has metrics")

    bucket, _, prefix = args.artifacts.removeprefix("s3://").partition("/")
    s3 = boto3.client(
        "s3",
        endpoint_url=args.s3_endpoint,
        aws_access_key_id=args.access_key,
        aws_secret_access_key=args.secret_key,
        region_name="us-east-1",
    )
    # The report's key as the pods computed it (its child run's tag), not as this machine would.
    report_runs = [c for c in children if c.data.tags.get("limit.kind") == "report"]
    if not report_runs:
        return fail([*problems, "no report child run"])
    report = f"report/{report_runs[0].data.tags['limit.key']}"
    try:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/{report}/_manifest.json")["Body"].read())
        s3.head_object(Bucket=bucket, Key=f"{prefix}/{report}/report.json")
    except s3.exceptions.ClientError as e:
        problems.append(f"s3://{bucket}/{prefix}/{report}: {e}")
    else:
        print(f"report in MinIO: s3://{bucket}/{prefix}/{report} ({len(manifest['files'])} files)")

    if problems:
        return fail(problems)
    print(f"MLflow: parent run {parent.info.run_id} with {len(children)} child runs; all checks passed")
    return 0


def fail(problems: list[str]) -> int:
    for problem in problems:
        print(f"e2e check failed: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
