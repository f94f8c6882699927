# Beater and Tailor: one image; docker-compose.yml picks the service with its command.
# Build context: the repository root.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md requirements.lock /app/
COPY estrom /app/estrom
COPY beater /app/beater
COPY tailor /app/tailor
# Every dependency at the version and hash requirements.lock names (`make lock` makes it from
# pyproject.toml's pins), then estrom itself, not editable.
RUN pip install --require-hashes -r requirements.lock && pip install --no-deps .

# Neither service writes anything locally.
USER nobody
EXPOSE 8070 8090
