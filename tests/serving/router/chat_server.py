"""A router-only service for tests, in its own process: `POST /v1/chat/completions` + `GET /healthz`.

Built exactly as `tierroute serve --policy` mounts the chat endpoint (`build_chat_router` over a
warmed `Router`, root logging configured by `logging.basicConfig` at the chosen level), without the
classifier bundle the full service needs: tests that kill the process or read its log at debug
level start in seconds. Usage: `python -m tests.serving.router.chat_server POLICY PORT [LOG_LEVEL]`.
"""

from __future__ import annotations

import logging
import sys

import uvicorn
from fastapi import FastAPI

from serving.router import Router, load_policy
from serving.router.http import build_chat_router


def main(argv: list[str]) -> None:
    policy, port = argv[0], int(argv[1])
    level = argv[2] if len(argv) > 2 else "info"
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    router = Router(load_policy(policy), classifier=None).warm()
    app = FastAPI()
    app.include_router(build_chat_router(router))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level=level, lifespan="off")
    finally:
        router.close()


if __name__ == "__main__":
    main(sys.argv[1:])
