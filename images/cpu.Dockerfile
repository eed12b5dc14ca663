# The CPU image: tiny models on kind in CI (and the MLflow server / bucket job of charts/limit).
# Build from the repository root: `bash images/build.sh cpu`.
FROM python:3.11.14-slim-bookworm

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /opt/limit
# Every install is pinned by the tested lock file (images/constraints.txt, checked by `make test`).
COPY images/constraints.txt /opt/limit/constraints.txt
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin limit \
    && python -m venv /opt/venv \
    && pip install -c constraints.txt --upgrade pip setuptools wheel

# CPU torch from PyTorch's CPU index (PyPI's Linux wheel drags in CUDA); PyPI stays an index too, because
# that index has lacked some of torch's own dependencies (sympy, ...). Then the project as the README
# installs it (`pip install .`).
RUN pip install -c constraints.txt --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple torch
COPY pyproject.toml README.md /opt/limit/
COPY limit /opt/limit/limit
COPY workflows /opt/limit/workflows
RUN pip install -c constraints.txt . && limit --help > /dev/null

USER 1000:1000
WORKDIR /home/limit
# No ENTRYPOINT: Argo runs `limit step ...` (each step's argv) as the container's arguments.
CMD ["limit", "--help"]
