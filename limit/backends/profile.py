"""Cluster profiles: where and how a study's pods run (image, namespace, storage, MLflow, GPU nodes).

A study says *what* to compute; a profile says *where*. Profiles are YAML files in `workflows/profiles/`
(or any path), validated with pydantic; errors name the file and the dotted field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from limit.costs import Gpu
from limit.execution.locations import WORKFLOWS
from limit.plan.summary import Slots
from limit.spec.loader import FieldError, load_model, resolve_named

PROFILES_DIR = WORKFLOWS / "profiles"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretKey(Strict):
    """One key of a Kubernetes Secret, exposed to a pod as an environment variable."""

    name: str
    key: str


class S3Credentials(Strict):
    """The Secret holding the S3/MinIO credentials every step uses for its outputs."""

    secret: str = "limit-s3"
    access_key_key: str = "accessKey"
    secret_key_key: str = "secretKey"


class MlflowCredentials(Strict):
    """The Secret with the MLflow user pods log as (chart: mlflow.auth.workflowUser, not the admin), as
    MLFLOW_TRACKING_USERNAME/PASSWORD."""

    secret: str = "limit-mlflow-workflow"
    username_key: str = "username"
    password_key: str = "password"


class Toleration(Strict):
    key: str
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class Semaphore(Strict):
    """A ConfigMap key whose integer value caps concurrent GPU pods (the chart creates it)."""

    configmap: str = "limit-semaphores"
    key: str = "gpu-pods"
    pods: int = Field(4, gt=0, description="Its value (chart: semaphores.gpuPods), for the planner's wall-clock time.")


class Retry(Strict):
    """Retries for transient failures and preemption; exit code 2 (bad input) is never retried."""

    limit: int = Field(3, ge=0)
    backoff: str = "1m"
    factor: int = Field(2, ge=1)
    # The longest wait between two attempts. Not Argo's maxDuration: that counts from the first attempt, so a
    # finetune preempted after running longer than it would never be retried (and never resume).
    cap: str = "30m"


class ArtifactRepository(Strict):
    """The artifact-repositories ConfigMap entry that receives step logs (archiveLogs)."""

    configmap: str = "artifact-repositories"
    key: str = "default-v1"


class Profile(Strict):
    name: str
    description: str = ""
    image: str = Field(description="By digest (image@sha256:...), as `make image` prints it.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    allow_mutable_tag: bool = Field(False, description="Accept an image by tag (it may change under a study).")
    image_pull_secrets: list[str] = Field(default_factory=list)
    namespace: str = "limit"
    service_account: str = "limit-workflow"
    run_as_user: int = Field(1000, gt=0, description="Pods run as this non-root user (the image's user).")

    artifacts: str = Field(description="s3://bucket/prefix where every step's outputs live (LIMIT_ARTIFACTS).")
    s3_endpoint: str | None = Field(None, description="AWS_ENDPOINT_URL, e.g. MinIO's in-cluster Service.")
    s3_region: str = "us-east-1"
    s3_credentials: S3Credentials = Field(default_factory=S3Credentials)
    judge_api_key: SecretKey | None = Field(None, description="Secret with the judge's API key (openai judge).")
    judge_http_hosts: list[str] = Field(
        default_factory=list, description="Judge hosts reached over plain http (in-cluster servers); else https."
    )
    hf_token: SecretKey | None = Field(None, description="Secret with a Hugging Face token (gated models).")
    mlflow_uri: str = Field(description="MLFLOW_TRACKING_URI as seen from pods.")
    mlflow_credentials: MlflowCredentials | None = Field(None, description="When MLflow has basic auth on.")

    node_selector: dict[str, str] = Field(default_factory=dict, description="For CPU steps.")
    tolerations: list[Toleration] = Field(default_factory=list, description="For CPU steps.")
    gpu_node_selector: dict[str, str] = Field(default_factory=dict, description="For steps that need GPUs.")
    gpu_tolerations: list[Toleration] = Field(default_factory=list, description="For steps that need GPUs.")
    gpu_semaphore: Semaphore | None = Field(default_factory=Semaphore)
    parallelism: int | None = Field(None, gt=0, description="At most this many step pods at once.")
    gpu_memory_gib: float = Field(80, gt=0, description="Memory of one GPU: the planner refuses steps over it.")
    gpu_peak_tflops: float = Field(989, gt=0, description="Dense bf16 peak of one GPU, for GPU-hour estimates.")
    mfu: float = Field(0.35, gt=0, le=1, description="Assumed model FLOP utilisation, for GPU-hour estimates.")
    gpu_memory_tbps: float = Field(3.35, gt=0, description="HBM bandwidth of one GPU, TB/s: it bounds decoding.")
    gpu_hour_usd: float | None = Field(None, ge=0, description="Price of one GPU-hour, for the plan's dollars.")

    retry: Retry = Field(default_factory=Retry)
    active_deadline_seconds: int = Field(14 * 24 * 3600, gt=0)
    ttl_seconds_after_completion: int = Field(7 * 24 * 3600, ge=0)
    pod_gc: Literal["OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess"] = "OnPodSuccess"
    artifact_repository: ArtifactRepository | None = Field(default_factory=ArtifactRepository)
    ui_url: str | None = Field(None, description="Argo UI base URL for links (default: ARGO_SERVER).")

    @property
    def placeholder_image(self) -> bool:
        """The shipped profiles' all-zero digest: no registry has it, so no pod would start."""
        return self.image.endswith("@sha256:" + "0" * 64)

    @property
    def gpu(self) -> Gpu:
        return Gpu(self.gpu_memory_gib, self.gpu_peak_tflops, self.mfu, self.gpu_memory_tbps, self.gpu_hour_usd)

    @property
    def slots(self) -> Slots:
        """How many pods may run at once, as the planner's wall-clock time assumes."""
        return Slots(self.gpu_semaphore.pods if self.gpu_semaphore else None, self.parallelism)

    @model_validator(mode="after")
    def _pinned_image(self) -> Profile:
        # A tag can be pushed again between a study's first and last pod (retries, resubmissions): by digest,
        # every pod of a study runs the same code, the code its step keys were computed with.
        if DIGEST.search(self.image) or self.image_pull_policy == "Never" or self.allow_mutable_tag:
            return self
        raise FieldError(
            "image",
            f"'{self.image}' is a mutable tag: give image@sha256:<digest> (`PUSH=1 make image` prints it), "
            "or set allow_mutable_tag: true",
        )

    @field_validator("artifacts")
    @classmethod
    def _s3(cls, value: str) -> str:
        if not value.startswith("s3://"):
            raise ValueError("pods share outputs through S3: give s3://bucket/prefix")
        return value


def resolve_profile_path(profile: str) -> Path:
    """A profile is a name in `workflows/profiles/` or a path to a YAML file."""
    return resolve_named(profile, PROFILES_DIR, "profile")


def load_profile(profile: str) -> Profile:
    return load_model(resolve_profile_path(profile), Profile, "profile")
