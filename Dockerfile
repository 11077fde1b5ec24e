# sendguard worker image.  Build context is the repository root; only the files
# needed to install the package are copied (no .venv/.stack leak into layers).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY processor ./processor
COPY schemas ./schemas
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin sendguard \
    && mkdir -p /data \
    && chown sendguard /data

USER sendguard
WORKDIR /data
ENV SENDGUARD_DATA_DIR=/data

# The worker stops cleanly on SIGTERM (docker stop / compose down).
STOPSIGNAL SIGTERM
CMD ["sendguard", "worker"]
