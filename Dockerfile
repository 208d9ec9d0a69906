# softserve: the service on the shipped models, able to train inside the container.
#   docker build -t softserve .                      (--build-arg WITH_DATA=0: no Fashion-MNIST)
#   docker run -p 8000:8000 -v softserve-models:/app/models -v softserve-state:/app/state softserve
FROM python:3.11-slim-bookworm

# 1 (default): Debian's Fashion-MNIST (about 30 MB) so that /train works in the container.
ARG WITH_DATA=1

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN if [ "$WITH_DATA" = 1 ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends dataset-fashion-mnist \
        && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb; \
    fi \
    && useradd --system --user-group --uid 10001 --home-dir /app --no-create-home softserve \
    && mkdir -p /app/models /app/state \
    && chown softserve:softserve /app /app/models /app/state

# Dependencies in their own layer: rebuilt only when pyproject.toml changes. All are wheels,
# so no compiler is needed (or left behind); the base image's pip installs into a venv that has
# no pip or setuptools of its own (25 MB less).
COPY pyproject.toml /tmp/build/pyproject.toml
RUN python3 -m venv --without-pip /opt/venv \
    && python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/build/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/build/requirements.txt \
    && python3 -m pip --python /opt/venv/bin/python install -r /tmp/build/requirements.txt \
    && rm -rf /tmp/build

# The project itself (not editable), then the shipped models, copied into the model volume on
# first start (SOFTSERVE_SEED_DIR) - a volume that already holds models is left as it is.
COPY pyproject.toml README.md /tmp/build/
COPY trainer /tmp/build/trainer
COPY service /tmp/build/service
RUN python3 -m pip --python /opt/venv/bin/python install --no-deps /tmp/build && rm -rf /tmp/build
COPY models/softmax.npz models/binary.npz /opt/softserve/models/

ENV PATH=/opt/venv/bin:$PATH \
    SOFTSERVE_HOST=0.0.0.0 \
    SOFTSERVE_HTTP_PORT=8000 \
    SOFTSERVE_WORKERS=1 \
    SOFTSERVE_MODEL_DIR=/app/models \
    SOFTSERVE_STATE_DIR=/app/state \
    SOFTSERVE_SEED_DIR=/opt/softserve/models

WORKDIR /app
USER softserve
VOLUME ["/app/models", "/app/state"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "service.probe"]
# uvicorn turns SIGTERM into a graceful shutdown: running jobs are cancelled and marked so.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "service"]
