"""`python -m serving.llamacpp_server ARGS`: llama-cpp-python's OpenAI-compatible server, with
the same arguments as `python -m llama_cpp.server`, plus `GET /health`.

vLLM and llama.cpp's own `llama-server` answer `/health`, and routers and orchestrators probe
it (vllm-router waits for every worker's `/health` before it routes; compose and Kubernetes
health checks use it too); llama-cpp-python's server has no such route. The model is loaded
before the server listens, so a server that answers is ready.
"""

from __future__ import annotations

import argparse
from typing import cast

import uvicorn
from fastapi import Response
from llama_cpp.server.app import create_app
from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serving.llamacpp_server")
    add_args_from_model(parser, Settings)
    args = parser.parse_args(argv)
    # Typed upstream as returning the class it is given; it returns an instance of it.
    server = cast(ServerSettings, parse_model_from_args(ServerSettings, args))
    model = cast(ModelSettings, parse_model_from_args(ModelSettings, args))
    app = create_app(server_settings=server, model_settings=[model])

    @app.get("/health", include_in_schema=False)
    def health() -> Response:
        return Response(status_code=200)

    uvicorn.run(app, host=server.host, port=server.port)


if __name__ == "__main__":
    main()
