# The operator image: `docker build -t ghcr.io/qwen-operator/qwen-operator:0.1.0 .`
# (the image manifests/deployment.yaml runs). Build context: the repository root.
# The release (.github/workflows/release.yaml) pins the base by the digest of its multi-arch index:
# --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...
# Every Python package comes from a hash-locked file (requirements/*.lock, `pip-compile
# --generate-hashes`): pip refuses anything whose hash is not listed, and resolves nothing itself.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY requirements/build.lock requirements/build.lock
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/build.lock
COPY pyproject.toml README.md ./
COPY operator/ operator/
# operator/qwen_operator/children/alerts/prometheusrule.yaml links to it: the per-resource rule's source.
COPY manifests/monitoring/prometheusrule.yaml manifests/monitoring/prometheusrule.yaml
COPY runtime/ runtime/
RUN pip wheel --no-cache-dir --no-build-isolation --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="qwen-operator" \
      org.opencontainers.image.description="Kubernetes operator serving Qwen3-235B-A22B-Thinking-2507-FP8 with vLLM" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# No bytecode written at run time: the root filesystem is read-only (manifests/deployment.yaml).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    QWEN_OPERATOR_METRICS_PORT=8443 \
    QWEN_OPERATOR_HEALTH_PORT=8081
COPY requirements/operator.lock /tmp/operator.lock
RUN pip install --no-cache-dir --require-hashes --no-deps -r /tmp/operator.lock
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --no-deps /wheels/qwen_operator-*.whl \
 && pip check \
 && rm -rf /wheels /tmp/operator.lock \
 && python -c "import qwen_operator.process.handlers, qwen_operator.process.main"
# A numeric non-root user, so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# /metrics (HTTPS, behind RBAC) and /healthz, /readyz (plain HTTP, for the kubelet).
EXPOSE 8443 8081
ENTRYPOINT ["qwen-operator"]
CMD ["run", "--all-namespaces"]
