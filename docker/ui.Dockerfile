# syntax=docker/dockerfile:1
# The Streamlit UI image: only the `ui` extra of pyproject.toml, never the project's own
# dependencies (they hold torch). The UI talks to the REST API and nothing else.
#   docker build -f docker/ui.Dockerfile -t rag-long-context/ui .

FROM python:3.11-slim-bookworm AS build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['ui']))" > ui-requirements.txt
RUN pip install -r ui-requirements.txt
# Fails the build if anything pulled torch in.
RUN ! pip show torch

FROM python:3.11-slim-bookworm AS runtime
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin rag
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv/rag
# The UI's source only (it imports nothing else of the project: tests/deploy check it).
COPY ui ./ui
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/srv/rag \
    PYTHONUNBUFFERED=1 \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
USER rag
EXPOSE 8501
CMD ["streamlit", "run", "ui/app.py", "--server.address=0.0.0.0", "--server.port=8501"]
