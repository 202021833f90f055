# Sightline with its embedded CPU Triton (the nvidia-pytriton wheel). On GPU hosts, run the official Triton
# container beside it and set SIGHTLINE_TRITON_URL (deploy/compose, deploy/k8s); model_repository/ serves there
# unchanged.

# ---- build: a virtual environment with the pinned dependencies and Sightline itself
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY postprocess ./postprocess
RUN /opt/venv/bin/pip install -c constraints.txt .

# ---- runtime: the environment, the bundled models, a non-root user
FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SIGHTLINE_HOST=0.0.0.0 \
    SIGHTLINE_METRICS_HOST=0.0.0.0 \
    SIGHTLINE_DATA_DIR=/var/lib/sightline \
    SIGHTLINE_MODEL_REPOSITORY=/opt/sightline/model_repository
RUN useradd --system --uid 10001 --home-dir /var/lib/sightline --create-home sightline
COPY --from=build /opt/venv /opt/venv
COPY model_repository /opt/sightline/model_repository
COPY samples /opt/sightline/samples
WORKDIR /var/lib/sightline
USER 10001
EXPOSE 50051 9464 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 CMD ["sightline", "health"]
ENTRYPOINT ["sightline"]
CMD ["serve"]
