# The service image: multi-stage, slim, non-root. Build with `make image` where Docker runs.
# The base is pinned to one Python release on one Debian release (the versions CI tests on).
FROM python:3.11.7-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# The dependency pins live in pyproject.toml; the install is not editable, so the final stage
# needs only the virtual environment, package data (the shipped model, templates) included.
COPY pyproject.toml README.md ./
COPY models ./models
COPY service ./service
COPY training ./training
COPY monitoring ./monitoring
RUN /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11.7-slim-bookworm

# A fixed numeric user, so Kubernetes' runAsNonRoot can check it (deploy/k8s/deployment.yaml).
RUN groupadd --system --gid 10001 triage \
    && useradd --system --uid 10001 --gid triage --no-create-home --shell /usr/sbin/nologin triage \
    && mkdir -p /var/lib/triage \
    && chown triage:triage /var/lib/triage
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRIAGE_VAR_DIR=/var/lib/triage
USER 10001:10001
WORKDIR /var/lib/triage
EXPOSE 8000
# Liveness as the orchestrator sees it; Kubernetes uses its own probes (/healthz, /readyz).
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["triage"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
