# syncjob container image: a virtualenv with syncjob and its dependencies on a slim Python base.
#
#   docker build -t REGISTRY/syncjob:TAG .
#
# The base is pinned by tag. Pinning by digest as well (python:3.11-slim-bookworm@sha256:...) is
# better - the build is then reproducible and a re-pushed tag cannot change it - but a digest cannot
# be resolved offline where this file is maintained: add it in the release pipeline
# (e.g. `docker buildx imagetools inspect python:3.11-slim-bookworm`). Both stages must use the
# same base: the venv's python links to the base image's interpreter.

FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what `pip install .` reads reaches the context: see .dockerignore.
COPY . .
# Dependencies come as wheels (pure Python or manylinux): no compiler is needed or installed.
RUN pip install --no-cache-dir .


FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="syncjob" \
      org.opencontainers.image.description="Copies registry Secrets into every namespace that runs kpack builds" \
      org.opencontainers.image.licenses="Apache-2.0"

# Only the venv: no sources, no build tools, no pip cache.
COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Numeric, so `runAsNonRoot` can verify it without an /etc/passwd entry; the same as the
# CronJob's runAsUser / runAsGroup (k8s/cronjob.yaml).
USER 65532:65532

ENTRYPOINT ["syncjob"]
CMD ["run"]
