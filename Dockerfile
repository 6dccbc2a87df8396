# kapistrano operator image.
#   docker build -t ghcr.io/kapistrano/kapistrano:0.1.0 .
# The build stage turns the package and its dependencies into wheels; the final stage installs only those
# wheels (asyncssh is pure Python, so no SSH client or compiler is needed at run time).

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/kapistrano-*.whl \
    && rm -rf /wheels
# A fixed non-root uid/gid (the "nonroot" user of distroless images); matches the Deployment's runAsUser.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["kapistrano"]
CMD ["run", "--all-namespaces"]
