# syntax=docker/dockerfile:1
# The dance service (python -m kpop_helpers.serve) for a CPU device: ONNX Runtime, no torch.
# Multi-arch: python:3.12-slim is published for linux/amd64 and linux/arm64 (Jetson, Raspberry Pi 4/5 with a
# 64-bit OS), and every wheel of the [serve] install exists for both. Build and run: docker/README.md.
#   docker buildx build --platform linux/amd64,linux/arm64 -f docker/serve.Dockerfile -t kpop-serve .
# The export folder is not baked in: mount it read-only at /models/export.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the package needs (README.md: pyproject's readme); .dockerignore keeps the rest out of the context.
COPY pyproject.toml README.md ./
COPY kpop_helpers ./kpop_helpers
# [serve] alone: the device install, torch-free (tests/test_install_serve.py proves it in a fresh venv).
RUN /opt/venv/bin/pip install ".[serve]" \
    && /opt/venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

FROM python:${PYTHON_VERSION}-slim
LABEL org.opencontainers.image.title="kpop-serve" \
      org.opencontainers.image.description="K-pop choreography service: EdgeGenerator (ONNX Runtime) behind FastAPI"
# A fixed non-root uid/gid (numeric, so runAsNonRoot can verify it); nothing in the image belongs to it.
RUN groupadd --system --gid 10001 kpop \
    && useradd --system --uid 10001 --gid kpop --home-dir /home/kpop --create-home --shell /usr/sbin/nologin kpop
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /home/kpop
EXPOSE 8000
# /healthz is open (no API key) and answers 503 once shutdown begins; urllib raises on it, so the check fails.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
# 0.0.0.0 binds every interface of the container's own network namespace; only ports published with
# `docker run -p` reach it (publish on 127.0.0.1 to keep it on the host). Set KPOP_SERVE_API_KEY to require a key.
# Later arguments win: `docker run ... kpop-serve --variant fp32 --workers 2` replaces the CMD's.
ENTRYPOINT ["python", "-m", "kpop_helpers.serve", "--export-dir", "/models/export", \
            "--host", "0.0.0.0", "--port", "8000"]
CMD ["--variant", "int8"]
