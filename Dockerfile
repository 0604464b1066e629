# The plora image: Python 3.11, torch, plora and Prefect. docker-compose.yml runs it twice: as the
# Prefect server (same Prefect version as the worker, by construction) and as the GPU worker.
#
# torch comes from PyPI, whose Linux x86-64 build bundles the CUDA runtime; the NVIDIA driver comes
# from the host through the NVIDIA Container Toolkit (docs/deployment.md). Another CUDA flavour:
#   docker compose build --build-arg TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
FROM python:3.11-slim

ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX=

# git: the git connector and `plora init --example` (it builds a small repository)
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PLORA_REPO=/opt/plora \
    PLORA_HOME=/data/plora \
    PREFECT_HOME=/data/prefect

WORKDIR /opt/plora

# torch first, in its own layer: it is by far the largest download and changes least
RUN pip install "${TORCH_SPEC}" ${TORCH_INDEX}

COPY . .
# editable: the worker loads flows/cycle.py from /opt/plora (prefect.yaml's pull step, PLORA_REPO)
# and that is the very code the package imports
RUN pip install -e ".[postgres]"

VOLUME ["/data/plora"]
CMD ["prefect", "worker", "start", "--pool", "plora"]
