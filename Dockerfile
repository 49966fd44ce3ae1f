# syntax=docker/dockerfile:1
# inferscale server image.
#   docker build -t inferscale:0.1.0 .
# The Helm chart (chart/) runs it with the same command, port, user and
# metrics directory as declared here; tests/test_dockerfile.py checks that.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: wheels for the project and every dependency -------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest out), and
# constraints.txt: the versions of every dependency the tests ran.
COPY pyproject.toml constraints.txt ./
COPY server/ ./server/
RUN pip wheel --wheel-dir /wheels --constraint constraints.txt .

# ---- runtime ----------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    # Shared by the pod's processes for prometheus_client multiprocess mode.
    # The chart mounts an emptyDir here: the root filesystem is read-only.
    PROMETHEUS_MULTIPROC_DIR=/tmp/inferscale-metrics \
    HOME=/tmp
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels inferscale \
 && groupadd --system --gid 10001 inferscale \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin inferscale
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd;
# equals the chart's securityContext.runAsUser.
USER 10001:10001
WORKDIR /tmp
# 8080: inference (PORT); 8081: /health, /ready and /metrics (ADMIN_PORT).
EXPOSE 8080 8081
ENTRYPOINT ["inferscale"]
CMD ["serve"]
