"""A study's plan as an Argo Workflow, built with Hera.

One DAG task per plan step, each running a container whose args are exactly `Step.argv` (what `limit plan`
prints and the local backend runs). Steps read and write their outputs in S3 themselves, at their
content-addressed keys; Argo only carries a step's small summary (an output parameter) and its logs.

A first task opens the study execution's MLflow parent run; every step gets its id through the
environment (LIMIT_PARENT_RUN_ID), and the exit handler closes it with the workflow's status.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import requests
from hera.workflows import (
    DAG,
    Container,
    EmptyDirVolume,
    Env,
    Parameter,
    Resources,
    RetryStrategy,
    SecretEnv,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows import models as m

from limit.backends.profile import Profile, Toleration
from limit.errors import LimitError, UnavailableError
from limit.plan import Plan, Step
from limit.spec.study import ModelSpec, Study
from limit.steps import common_base, step_command

ENTRYPOINT = "study"
PARENT_TASK = "mlflow-parent"
OUTPUTS_DIR = "/tmp/limit-outputs"  # the runner writes summary.json here (LIMIT_OUTPUTS_DIR)
WORKDIR = "/work"  # machine-local cache: tiny models, downloaded checkpoints, HF cache
# The root filesystem is read-only: the image's user's home is a fresh volume, for the caches libraries keep
# under ~ (~/.cache: torch hub, torch_extensions (DeepSpeed's JIT ops), vLLM; ~/.triton; ~/.config/matplotlib).
HOME_DIR = "/home/limit"
# Argo's emissary executor must know the command or it asks the registry for the image's entrypoint
# (impossible for kind-loaded images); `env` runs the args unchanged.
COMMAND = ["/usr/bin/env"]
SERVER_TIMEOUT_S = 30


def workflow_name(plan: Plan) -> str:
    return f"limit-{plan.study.name}"


def build_workflow(plan: Plan, profile: Profile, template: bool = False) -> Workflow:
    """The study as a `Workflow` (or, with `template`, a `WorkflowTemplate` to resubmit from the Argo UI)."""
    check_submittable(plan, profile)
    study = plan.study.name
    kind = WorkflowTemplate if template else Workflow
    naming = {"name": workflow_name(plan)} if template else {"generate_name": f"{workflow_name(plan)}-"}
    with kind(**naming, **_workflow_settings(study, profile)) as w:
        start_parent = _parent_run_templates(study, profile)
        templates = {}
        for name, group in template_groups(plan, profile).items():
            template, shared = step_template(name, group, plan, profile), shared_base(group)
            templates |= {step.id: (template, shared) for step in group}

        with DAG(name=ENTRYPOINT, parallelism=profile.parallelism):
            parent = start_parent(name=PARENT_TASK)
            run_id = parent.get_parameter("run-id").value
            tasks = {}
            for step in plan.order():
                template, shared = templates[step.id]
                own = step_command(step.kind, step.input, shared).input
                arguments = {"parent-run-id": run_id, "key": step.key, "input": own}
                task = template(name=step.id, arguments=arguments)
                if step.deps:
                    [tasks[d] for d in step.deps] >> task
                else:
                    parent >> task  # steps with upstream steps wait for the parent run through them
                tasks[step.id] = task
    return w


def submit(plan: Plan, profile: Profile, template: bool = False) -> tuple[str, str | None]:
    """Create the study's Workflow (or WorkflowTemplate) on the Argo server of the environment (ARGO_SERVER,
    ARGO_TOKEN, ARGO_INSECURE_SKIP_VERIFY); its name, and the UI link of a workflow.

    A missing or unreachable server, a refused token or a rejected workflow is one line (exit 75 when the
    server could not be reached), with nothing created.
    """
    from hera.workflows import WorkflowsService

    if profile.placeholder_image:
        raise LimitError("profile image: the placeholder digest (all zeros): set the one `PUSH=1 make image` prints")
    server = _server()
    insecure = os.environ.get("ARGO_INSECURE_SKIP_VERIFY", "").lower() in ("1", "true", "yes")
    service = WorkflowsService(
        host=server,
        token=os.environ.get("ARGO_TOKEN") or None,
        namespace=profile.namespace,
        verify_ssl=not insecure,
        session=_TimeoutSession(),
    )
    workflow = build_workflow(plan, profile, template=template)
    workflow.workflows_service = service
    what = "workflow template" if template else "workflow"
    with _server_errors(server, what, profile.namespace):
        name = workflow.create().metadata.name
    if template:
        return name, None
    link_service = WorkflowsService(host=profile.ui_url, namespace=profile.namespace) if profile.ui_url else service
    return name, link_service.get_workflow_link(name)


def _server() -> str:
    server = os.environ.get("ARGO_SERVER", "").strip()
    if not server:
        raise LimitError("ARGO_SERVER is not set: give the Argo server's URL, e.g. https://localhost:2746")
    # the argo CLI's ARGO_SERVER is host:port, served over TLS
    return server if server.startswith(("http://", "https://")) else f"https://{server}"


class _TimeoutSession(requests.Session):
    """Hera sends requests without a timeout; an unreachable server must not hang the command."""

    def request(self, *args, **kwargs):
        kwargs.setdefault("timeout", SERVER_TIMEOUT_S)
        return super().request(*args, **kwargs)


@contextlib.contextmanager
def _server_errors(server: str, what: str, namespace: str) -> Iterator[None]:
    """What the Argo server (or the way to it) answered, as one line."""
    from hera.exceptions import Forbidden, HeraException, Unauthorized

    try:
        yield
    except requests.exceptions.SSLError:
        raise LimitError(
            f"{server}: TLS verification failed (self-signed? set ARGO_INSECURE_SKIP_VERIFY=true)"
        ) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
        raise UnavailableError(f"cannot reach the Argo server at {server} (ARGO_SERVER): {type(e).__name__}") from None
    except requests.exceptions.RequestException as e:
        raise LimitError(f"the Argo server at {server} (ARGO_SERVER) failed: {type(e).__name__}") from None
    except Unauthorized:
        raise LimitError(
            f"{server} refused the token (401): set ARGO_TOKEN to a valid one (`argo auth token`)"
        ) from None
    except Forbidden:
        raise LimitError(f"{server}: the token may not create a {what} in namespace '{namespace}' (403)") from None
    except HeraException as e:
        raise LimitError(f"{server} rejected the {what}: {e}") from None


def _workflow_settings(study: str, profile: Profile) -> dict:
    """What the profile sets on the workflow itself: namespace, pod security, deadlines, clean-up, logs."""
    repository = profile.artifact_repository
    return {
        "namespace": profile.namespace,
        "labels": {"limit/study": study},
        "entrypoint": ENTRYPOINT,
        "on_exit": "end-parent-run",
        "service_account_name": profile.service_account,
        "image_pull_secrets": profile.image_pull_secrets or None,
        "security_context": m.PodSecurityContext(
            run_as_non_root=True,
            run_as_user=profile.run_as_user,
            run_as_group=profile.run_as_user,
            fs_group=profile.run_as_user,
            seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
        ),
        "active_deadline_seconds": profile.active_deadline_seconds,
        "ttl_strategy": m.TTLStrategy(seconds_after_completion=profile.ttl_seconds_after_completion),
        "pod_gc": m.PodGC(strategy=profile.pod_gc),
        "archive_logs": repository is not None,
        "artifact_repository_ref": (
            m.ArtifactRepositoryRef(config_map=repository.configmap, key=repository.key) if repository else None
        ),
    }


def _parent_run_templates(study: str, profile: Profile):
    """The templates that start the study's MLflow parent run (its id a global output) and end it on exit."""
    start = _parent_run_template(
        "start-parent-run",
        profile,
        ["limit", "parent-run", "start", "--study", study, "--workflow", "{{workflow.name}}"],
        outputs=[
            Parameter(
                name="run-id",
                value_from=m.ValueFrom(path=f"{OUTPUTS_DIR}/parent_run_id"),
                global_name="limit-parent-run-id",
            )
        ],
    )
    end = ["limit", "parent-run", "end", "--run-id", "{{workflow.outputs.parameters.limit-parent-run-id}}"]
    _parent_run_template("end-parent-run", profile, [*end, "--status", "{{workflow.status}}"])
    return start


def check_submittable(plan: Plan, profile: Profile) -> None:
    """What no pod could do: judge through an API without its key, or read the submitting machine's disk."""
    study = plan.study.name
    judged_by_api = plan.by_kind("judge") and plan.study.judge.backend == "openai"
    if judged_by_api and profile.judge_api_key is None:
        raise LimitError(
            f"profile '{profile.name}': judge_api_key: study {study} judges through an API "
            f"({plan.study.judge.model}); name the Secret that holds its key"
        )
    host = plan.study.judge.plain_http_host() if judged_by_api else None
    if host and host not in profile.judge_http_hosts:
        raise LimitError(
            f"study {study}: judge.base_url: plain http to {host} would send the judge's key unencrypted: use "
            f"https, or list {host} in profile '{profile.name}' judge_http_hosts (an in-cluster server)"
        )
    local = local_inputs(plan.study)
    if local:
        field, location = local[0]
        raise LimitError(
            f"study {study}: {field}: '{location}' is a path on this machine, which pods cannot read; "
            "use a hub dataset, an s3:// location (gauntlet data) or a fixture: file shipped in the image"
        )


def local_inputs(study: Study) -> list[tuple[str, str]]:
    """(field, location) of every input the study reads from the submitting machine's disk."""
    found = []
    for name, ds in study.datasets.items():
        if ds.source and ds.source.jsonl and not ds.source.jsonl.startswith("fixture:"):
            found.append((f"datasets.{name}.source.jsonl", ds.source.jsonl))
    for name, prompts in study.prompts.items():
        for field in ("jsonl", "release_txt"):
            location = getattr(prompts, field)
            if location and not location.startswith("fixture:"):
                found.append((f"prompts.{name}.{field}", location))
    for location in study.gauntlet.locations:
        if location.kind == "folder":
            found.append(("gauntlet.data", str(location)))
    return found


def template_groups(plan: Plan, profile: Profile) -> dict[str, list[Step]]:
    """Steps that can share one template: the same kind, resources and environment (secrets differ by step).

    A template per group, each task passing only its key and the input fields its group does not share, keeps
    the Workflow small (Argo stores it in one etcd object): bytes grow with the steps' differences only.
    """
    groups: dict[tuple, list[Step]] = {}
    for step in plan.order():
        env = tuple(repr(var) for var in _env(plan, profile, step))
        groups.setdefault((step.kind, step.resources.model_dump_json(), env), []).append(step)
    named, count = {}, {}
    for (kind, _, _), steps in groups.items():
        count[kind] = count.get(kind, 0) + 1
        named[kind if count[kind] == 1 else f"{kind}-{count[kind]}"] = steps
    return named


def shared_base(steps: list[Step]) -> dict:
    """Input fields (at any depth) with one value across a template's steps: they go into the template once."""
    if len(steps) < 2:
        return {}
    return common_base([step.input.model_dump(mode="json") for step in steps])


def step_template(name: str, steps: list[Step], plan: Plan, profile: Profile) -> Container:
    """The container that runs a group's steps: the argv with the group's shared input, resources,
    placement, retries and environment. Each task gives its `key` and the rest of its `input`."""
    first = steps[0]
    res = first.resources
    gpu = res.gpus > 0
    volumes = [EmptyDirVolume(name="work", mount_path=WORKDIR, size_limit=res.disk), *_scratch_volumes()]
    if res.shm:  # NCCL and dataloader workers need more than the runtime's 64Mi /dev/shm
        volumes.append(EmptyDirVolume(name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=res.shm))
    command = step_command(first.kind, first.input, shared_base(steps))
    argv = command.argv(key="{{inputs.parameters.key}}", input="{{inputs.parameters.input}}")
    return Container(
        name=name,
        image=profile.image,
        image_pull_policy=profile.image_pull_policy,
        command=COMMAND,
        args=argv,
        env=_env(plan, profile, first),
        inputs=[Parameter(name="parent-run-id"), Parameter(name="key"), Parameter(name="input")],
        outputs=[Parameter(name="summary", value_from=m.ValueFrom(path=f"{OUTPUTS_DIR}/summary.json", default="{}"))],
        resources=Resources(
            cpu_request=_cpu(res.cpu),
            memory_request=res.memory,
            memory_limit=res.memory,
            ephemeral_request=res.disk,
            ephemeral_limit=res.disk,
            gpus=res.gpus or None,
        ),
        volumes=volumes,
        security_context=_container_security(),
        node_selector=(profile.gpu_node_selector if gpu else profile.node_selector) or None,
        tolerations=_tolerations(profile.gpu_tolerations if gpu else profile.tolerations),
        synchronization=_gpu_semaphore(profile) if gpu else None,
        retry_strategy=_retries(profile),
        labels={"limit/study": plan.study.name, "limit/kind": first.kind},
    )


def _retries(profile: Profile) -> RetryStrategy:
    return RetryStrategy(
        limit=profile.retry.limit,
        retry_policy="Always",  # failed pods and errors alike: preemption and node loss show up as errors
        expression="asInt(lastRetry.exitCode) != 2",  # bad input never gets better by retrying
        backoff=m.Backoff(duration=profile.retry.backoff, factor=profile.retry.factor, cap=profile.retry.cap),
    )


def _parent_run_template(
    name: str, profile: Profile, args: list[str], outputs: list[Parameter] | None = None
) -> Container:
    return Container(
        name=name,
        image=profile.image,
        image_pull_policy=profile.image_pull_policy,
        command=COMMAND,
        args=args,
        env=[
            Env(name="MLFLOW_TRACKING_URI", value=profile.mlflow_uri),
            *_mlflow_credentials(profile),
            Env(name="LIMIT_OUTPUTS_DIR", value=OUTPUTS_DIR),
            Env(name="HOME", value=HOME_DIR),
        ],
        outputs=outputs,
        resources=Resources(cpu_request="100m", memory_request="512Mi", memory_limit="512Mi"),
        volumes=_scratch_volumes(),
        security_context=_container_security(),
        node_selector=profile.node_selector or None,
        tolerations=_tolerations(profile.tolerations),
        retry_strategy=RetryStrategy(limit=profile.retry.limit, retry_policy="Always"),
    )


def _env(plan: Plan, profile: Profile, step: Step) -> list[Env | SecretEnv]:
    """The step's environment: what every step needs, plus only the secrets this step uses."""
    creds = profile.s3_credentials
    env: list[Env | SecretEnv] = [
        Env(name="LIMIT_STUDY", value=plan.study.name),
        Env(name="LIMIT_PARENT_RUN_ID", value="{{inputs.parameters.parent-run-id}}"),
        Env(name="MLFLOW_TRACKING_URI", value=profile.mlflow_uri),
        *_mlflow_credentials(profile),
        Env(name="LIMIT_ARTIFACTS", value=profile.artifacts),
        Env(name="LIMIT_WORKDIR", value=WORKDIR),
        Env(name="LIMIT_OUTPUTS_DIR", value=OUTPUTS_DIR),
        Env(name="HF_HOME", value=f"{WORKDIR}/hf"),
        Env(name="HOME", value=HOME_DIR),
        Env(name="AWS_DEFAULT_REGION", value=profile.s3_region),
        SecretEnv(name="AWS_ACCESS_KEY_ID", secret_name=creds.secret, secret_key=creds.access_key_key),
        SecretEnv(name="AWS_SECRET_ACCESS_KEY", secret_name=creds.secret, secret_key=creds.secret_key_key),
    ]
    if profile.s3_endpoint:
        env.append(Env(name="AWS_ENDPOINT_URL", value=profile.s3_endpoint))
    if profile.hf_token and reads_hub(step):
        token = profile.hf_token
        env.append(SecretEnv(name="HF_TOKEN", secret_name=token.name, secret_key=token.key, optional=True))
    if profile.judge_api_key and step.kind == "judge" and step.input.judge.backend == "openai":
        key = profile.judge_api_key
        env.append(SecretEnv(name=step.input.judge.api_key_env, secret_name=key.name, secret_key=key.key))
    return _unique(env, step.id)


def _mlflow_credentials(profile: Profile) -> list[SecretEnv]:
    """MLflow's basic-auth user, which its client reads from these two variables."""
    creds = profile.mlflow_credentials
    if creds is None:
        return []
    return [
        SecretEnv(name="MLFLOW_TRACKING_USERNAME", secret_name=creds.secret, secret_key=creds.username_key),
        SecretEnv(name="MLFLOW_TRACKING_PASSWORD", secret_name=creds.secret, secret_key=creds.password_key),
    ]


def reads_hub(step: Step) -> bool:
    """Whether a step downloads from the Hugging Face hub, and so needs the hub token (gated models)."""
    inp = step.input
    if step.kind == "prepare":
        return bool(inp.source and inp.source.hf) or _hub_model(inp.stats_tokenizer)
    if step.kind in ("finetune", "gauntlet"):  # a gauntlet of a finetune's epoch reads the checkpoint from S3
        return _hub_model(inp.model)
    if step.kind == "generate":
        return _hub_model(inp.model) or inp.prompts.hf is not None
    if step.kind == "judge":
        return inp.judge.backend == "local" and _hub_model(inp.judge_model)
    return False  # select, report: only upstream outputs


def _hub_model(spec: ModelSpec | None) -> bool:
    if spec is None:
        return False
    # `tokenizer` is a hub id or a path; a pod has no paths of the submitting machine, so only ./, / and ~ are local.
    return spec.hf is not None or (spec.tokenizer is not None and not spec.tokenizer.startswith(("/", ".", "~")))


def _unique(env: list[Env | SecretEnv], where: str) -> list[Env | SecretEnv]:
    """Kubernetes keeps the last of two same-named variables: a second definition would silently win."""
    seen: set[str] = set()
    for var in env:
        if var.name in seen:
            raise LimitError(f"{where}: environment variable {var.name} would be defined twice")
        seen.add(var.name)
    return env


def _cpu(cores: float) -> str:
    """Kubernetes quantity: whole cores as "4", fractions in millicores ("500m")."""
    return str(int(cores)) if float(cores).is_integer() else f"{round(cores * 1000)}m"


def _scratch_volumes() -> list[EmptyDirVolume]:
    """The writable paths besides the work folder: /tmp (LIMIT_OUTPUTS_DIR, tempfile) and the home folder."""
    return [EmptyDirVolume(name="tmp", mount_path="/tmp"), EmptyDirVolume(name="home", mount_path=HOME_DIR)]


def _container_security() -> m.SecurityContext:
    return m.SecurityContext(
        allow_privilege_escalation=False,
        capabilities=m.Capabilities(drop=["ALL"]),
        read_only_root_filesystem=True,
    )


def _tolerations(tolerations: list[Toleration]) -> list[m.Toleration] | None:
    return [m.Toleration(**t.model_dump(exclude_none=True)) for t in tolerations] or None


def _gpu_semaphore(profile: Profile) -> m.Synchronization | None:
    sem = profile.gpu_semaphore
    if sem is None:
        return None
    ref = m.SemaphoreRef(config_map_key_ref=m.ConfigMapKeySelector(name=sem.configmap, key=sem.key))
    return m.Synchronization(semaphores=[ref])
