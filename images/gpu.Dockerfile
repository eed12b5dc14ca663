# The GPU image: finetuning (DeepSpeed, torchrun), the gauntlet and generation on NVIDIA GPUs (transformers or
# vLLM 0.28.0, the last vLLM that runs MPT; it requires torch 2.13.0, the project's torch).
# Build from the repository root: `bash images/build.sh gpu`. The CUDA base and PyTorch's wheel index are
# build arguments so that they can follow the cluster's driver (PyTorch 2.13 wheels for CUDA 13.0 by default).
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-cudnn-devel-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cu130
ARG DEEPSPEED_VERSION=0.19.8

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /opt/limit
# Every install is pinned by the tested lock file (images/constraints.txt, checked by `make test`).
COPY images/constraints.txt /opt/limit/constraints.txt
# The CUDA base images ship an `ubuntu` user with uid 1000: the project's user takes that uid instead.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev git ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && (userdel --remove ubuntu 2>/dev/null || true) \
    && useradd --uid 1000 --create-home --shell /usr/sbin/nologin limit \
    && python3 -m venv /opt/venv \
    && pip install -c constraints.txt --upgrade pip setuptools wheel

# CUDA torch from PyTorch's wheel index; PyPI stays an index too, because that index has lacked some of
# torch's own dependencies (sympy, cuda-bindings). The later install keeps both, so that vLLM's torchvision
# and torchaudio come in the same CUDA build as torch.
RUN pip install -c constraints.txt --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple torch
COPY pyproject.toml README.md /opt/limit/
COPY limit /opt/limit/limit
COPY workflows /opt/limit/workflows
# DeepSpeed builds its fused ops just in time (the devel base has nvcc); the project as the README installs it.
RUN pip install -c constraints.txt --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple \
        ".[gpu,vllm]" "deepspeed==${DEEPSPEED_VERSION}" \
    && limit --help > /dev/null

USER 1000:1000
WORKDIR /home/limit
ENV HF_HOME=/home/limit/.cache/huggingface
CMD ["limit", "--help"]
