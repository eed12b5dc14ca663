# The CPU image: tiny models on kind in CI (and the MLflow server / bucket job of charts/limit).
# Build from the repository root: `bash images/build.sh cpu`.
FROM python:3.11.14-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin limit \
    && python -m venv /opt/venv \
    && pip install --upgrade pip "setuptools<81" wheel

WORKDIR /opt/limit
# CPU torch from PyTorch's CPU index first (PyPI's Linux wheel drags in CUDA), then the project as the README
# installs it (`pip install .`), every dependency pinned by the tested lock file.
COPY images/constraints.txt /opt/limit/constraints.txt
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
COPY pyproject.toml README.md /opt/limit/
COPY limit /opt/limit/limit
COPY workflows /opt/limit/workflows
RUN pip install -c constraints.txt . && limit --help > /dev/null

USER 1000:1000
WORKDIR /home/limit
# No ENTRYPOINT: Argo runs `limit step ...` (each step's argv) as the container's arguments.
CMD ["limit", "--help"]
