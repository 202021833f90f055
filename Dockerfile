# Sightline with its embedded CPU Triton. On GPU hosts, run the official Triton container beside it and set
# SIGHTLINE_TRITON_URL; the same model_repository/ serves there unchanged.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SIGHTLINE_HOST=0.0.0.0 \
    SIGHTLINE_DATA_DIR=/var/lib/sightline \
    SIGHTLINE_MODEL_REPOSITORY=/opt/sightline/model_repository

WORKDIR /opt/sightline
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
COPY postprocess ./postprocess
COPY model_repository ./model_repository
COPY samples ./samples
RUN pip install -c constraints.txt . \
    && useradd --system --uid 10001 --home-dir /var/lib/sightline --create-home sightline

USER 10001
EXPOSE 50051
ENTRYPOINT ["sightline"]
CMD ["serve"]
