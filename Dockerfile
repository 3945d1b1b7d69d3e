# syntax=docker/dockerfile:1
# The one meshwright image: every service (`meshwright serve --services ...`), the REST
# gateway, sample agents (`meshwright agent run ...`) and the key-init step
# (`meshwright keys init ...`) run from it. Build from the repository root:
#   docker build -t meshwright:0.1.0 .
# deploy/compose.yaml builds it the same way; deploy/README.md says more.

ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

# -- build: wheels of the repository (`pip wheel .`, the same pyproject.toml that
# `pip install .` and scripts/up.sh install from) and of its runtime dependencies only:
# no dev extras.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY gateway ./gateway
COPY gen ./gen
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# -- runtime: the wheels installed offline, no compiler, no source tree, no pip cache.
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MESHWRIGHT_HOST=0.0.0.0 \
    MESHWRIGHT_AGENT_HOST=0.0.0.0 \
    MESHWRIGHT_GRPC_PORT=50051 \
    MESHWRIGHT_HTTP_PORT=8080 \
    MESHWRIGHT_LOG_FORMAT=json
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/meshwright-*.whl \
    && groupadd --system --gid 10001 meshwright \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/meshwright \
       --shell /usr/sbin/nologin meshwright
WORKDIR /home/meshwright
# Numeric, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 10001:10001

# 50051 gRPC (services), 8080 REST gateway, 9464 Prometheus /metrics, 50061 an agent's gRPC.
EXPOSE 50051 8080 9464 50061

# grpc.health.v1 Check on this process's own gRPC port (an agent's MESHWRIGHT_AGENT_PORT,
# else a service's MESHWRIGHT_GRPC_PORT): plain grpcio and grpcio-health-checking, no
# meshwright import, exit 0 only when SERVING. Health is open to every caller (no token).
# The gateway alone (`--services gateway`) is probed on /healthz instead: compose.yaml and
# the Kubernetes manifests set their own probes.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os,sys,grpc;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;p=os.environ.get('MESHWRIGHT_AGENT_PORT') or os.environ.get('MESHWRIGHT_GRPC_PORT') or '50051';c=grpc.insecure_channel('127.0.0.1:'+p);r=g.HealthStub(c).Check(h.HealthCheckRequest(),timeout=3);sys.exit(0 if r.status==h.HealthCheckResponse.SERVING else 1)"]

ENTRYPOINT ["meshwright"]
CMD ["serve"]
