# syntax=docker/dockerfile:1
# The load generator and monitor (python -m kpop_helpers.serve.load) against a kpop-serve container.
# Same multi-arch base and torch-free [serve] install as serve.Dockerfile (httpx and psutil are in [serve]).
#   docker buildx build --platform linux/amd64,linux/arm64 -f docker/load.Dockerfile -t kpop-load .
# It loads only a server on 127.0.0.1 and reads the server's CPU and RSS by its pid: run it in the server
# container's network and pid namespaces (--network container:NAME --pid container:NAME); see docker/README.md.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kpop_helpers ./kpop_helpers
RUN /opt/venv/bin/pip install ".[serve]" \
    && /opt/venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="kpop-load" \
      org.opencontainers.image.description="Load generator and CPU/RSS monitor for the kpop-serve service"
# The same uid as the server's image: psutil may then read the server's process in the shared pid namespace.
RUN groupadd --system --gid 10001 kpop \
    && useradd --system --uid 10001 --gid kpop --home-dir /home/kpop --create-home --shell /usr/sbin/nologin kpop \
    && install -d -o 10001 -g 10001 /out
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /home/kpop
# Results (load.json, load.md, load.png) go to /out (owned by uid 10001): mount a host folder there that
# the container's user (10001, or --user) may write.
ENTRYPOINT ["python", "-m", "kpop_helpers.serve.load", "--url", "http://127.0.0.1:8000", "--out", "/out"]
CMD ["--clients", "1", "2", "4", "8", "--seconds", "60"]
