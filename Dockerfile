# The operator image: `docker build -t ghcr.io/qwen-operator/qwen-operator:0.1.0 .`
# (the image manifests/deployment.yaml runs). Build context: the repository root.
# Pin the base by digest for reproducible builds: --build-arg PYTHON_IMAGE=python@sha256:...
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# operator/qwen_operator/children/alerts/prometheusrule.yaml links to it: the per-resource rule's source.
COPY manifests/monitoring/prometheusrule.yaml manifests/monitoring/prometheusrule.yaml
COPY runtime/ runtime/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/qwen_operator-*.whl

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="qwen-operator" \
      org.opencontainers.image.description="Kubernetes operator serving Qwen3-235B-A22B-Thinking-2507-FP8 with vLLM" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# No bytecode written at run time: the root filesystem is read-only (manifests/deployment.yaml).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    QWEN_OPERATOR_HTTP_PORT=8080
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels qwen-operator \
 && rm -rf /wheels \
 && python -c "import qwen_operator.process.handlers, qwen_operator.process.main"
# A numeric non-root user, so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["qwen-operator"]
CMD ["run", "--all-namespaces"]
