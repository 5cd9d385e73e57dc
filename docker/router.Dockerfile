# syntax=docker/dockerfile:1
# vllm-router (the `router` extra of pyproject.toml: a Rust load balancer shipped as a wheel) in
# front of the vLLM replicas, with the cache-aware policy (docker-compose.yml, profile replicas).
#   docker build -f docker/router.Dockerfile -t rag-long-context/router .

FROM python:3.11-slim-bookworm AS build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['router']))" > router-requirements.txt
RUN pip install -r router-requirements.txt

FROM python:3.11-slim-bookworm AS runtime
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin rag
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1
USER rag
EXPOSE 8000
ENTRYPOINT ["vllm-router"]
