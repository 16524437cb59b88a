# syntax=docker/dockerfile:1
# One image for every process of the dialer; docker-compose.yml picks the process with its command:
#   dialer api | worker | beat | flower | simulator | db init
# The default is the HTTP API and callback receiver. No secrets here: settings come from DIALER_* variables.

# --- build: install the project (no dev extras) into a virtual environment ---
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml schema.sql ./
COPY campaigns ./campaigns
COPY workers ./workers
COPY simulator ./simulator
# campaigns/schema.sql links to ../schema.sql and is package data: check the installed copy is there
# (-P: the installed package, not the source in the working directory).
RUN pip install . \
 && python -P -c 'from campaigns.db import SCHEMA_PATH; assert SCHEMA_PATH.is_file(), SCHEMA_PATH' \
 && dialer --help >/dev/null

# --- runtime: the virtual environment, the demo simulator config, a non-root user ---
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 dialer \
 && useradd --system --uid 10001 --gid dialer --home-dir /app --no-create-home --shell /usr/sbin/nologin dialer

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY deploy/simulator.json ./deploy/simulator.json

USER 10001:10001
# api, flower, simulator
EXPOSE 8000 5555 8765
CMD ["dialer", "api", "--host", "0.0.0.0"]
