# Sightline with its embedded CPU Triton (the nvidia-pytriton wheel). On GPU hosts, run the official Triton
# container beside it and set SIGHTLINE_TRITON_URL (deploy/compose, deploy/k8s); model_repository/ serves there
# unchanged.

# ---- build: a virtual environment with the pinned dependencies and Sightline itself
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A C compiler for post-processing's NMS kernel (postprocess/_greedy.c), in this stage only: the runtime stage
# takes the built environment. Bookworm's gcc 12, and the libc6-dev of the image's libc6 (any security update).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc=4:12.2.* libc6-dev=2.36-9+deb12u* \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY postprocess ./postprocess
# The kernel is optional to pip (the install goes on without a compiler): the image must have it.
RUN /opt/venv/bin/pip install -c constraints.txt . \
    && /opt/venv/bin/python -I -c "import postprocess._greedy"

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
