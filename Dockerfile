# syntax=docker/dockerfile:1
# Amber's published image (ghcr.io/amber-dr/amber:<version>, volumes.DEFAULT_IMAGE): the `amber`
# CLI, run as the operator (`amber operator`, deploy/), by its worker Jobs (`amber operator work`)
# and by mover Jobs (`amber mover ...`). Amber only: a database's dump and load programs run in a
# sidecar made from the database's own image (docs/internals/blueprints.md, "How a dump runs").
#
#   docker build -t ghcr.io/amber-dr/amber:0.1.0 .
#
# Not built by this repository's tests (no container builder there): keep it plain.

# pyproject says requires-python >= 3.11
FROM python:3.12-slim AS build
WORKDIR /src
# only what the wheel is made of (.dockerignore keeps everything else out of the context)
COPY pyproject.toml README.md ./
COPY src ./src
# Amber's wheel and its dependencies' (binary wheels from the index), so that the final stage
# installs without a network or a compiler
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# A named user for uid 65532, so that "who made this snapshot" has an answer (getpass, pwd).
RUN groupadd --gid 65532 amber \
    && useradd --uid 65532 --gid 65532 --home-dir /tmp --no-create-home \
               --shell /usr/sbin/nologin amber
# (no version pin: the only amber-backup there is the wheel just built, with its dependencies
# as pyproject resolved them)
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels amber-backup \
    && test -x /usr/local/bin/amber \
    && amber --version
# The operator and its workers need no privileges (numeric, so runAsNonRoot can verify it).
# Mover Jobs set runAsUser 0 themselves: they must read every file of a volume, whoever owns it.
# The shell stays (no distroless base): worker and mover Jobs start Amber through `sh -c`
# (volumes.amber_command).
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["amber"]
CMD ["--help"]
