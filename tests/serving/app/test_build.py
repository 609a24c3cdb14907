"""`create_app` registers every route when the app is built (none in the lifespan) and sizes the
body cap per path: the chat endpoint takes bodies up to its own 4 MiB cap."""

from __future__ import annotations

from pathlib import Path

from serving.app import create_app
from serving.app.errors import CHAT_PATH, BodyLimitMiddleware, error_body
from serving.router.chat_schema import LIMITS
from serving.settings import ServeSettings


def test_every_route_is_registered_at_build_time(tmp_path: Path) -> None:
    settings = ServeSettings(model=str(tmp_path / "bundle"), policy=tmp_path / "policy.yaml")
    app = create_app(settings)  # no lifespan has run: nothing is loaded, the routes are all there
    paths = set(app.openapi()["paths"])
    expected = {"/v1/classify", "/healthz", "/readyz", "/v1/models", "/metrics", "/admin/status"}
    assert expected | {"/admin/reload", "/v1/gate", CHAT_PATH} <= paths


def test_the_chat_path_gets_the_chat_endpoints_body_cap(tmp_path: Path) -> None:
    small = ServeSettings(model=str(tmp_path), max_chars=1000, policy=tmp_path / "policy.yaml")
    assert small.max_body_bytes < LIMITS.max_body_bytes
    (limit,) = [m for m in create_app(small).user_middleware if m.cls is BodyLimitMiddleware]
    middleware = BodyLimitMiddleware(app=None, **limit.kwargs)  # type: ignore[arg-type]
    assert middleware.limit_for(CHAT_PATH) == LIMITS.max_body_bytes
    assert middleware.limit_for("/v1/classify") == small.max_body_bytes
    without_policy = [m for m in create_app(ServeSettings(model=str(tmp_path))).user_middleware]
    (plain,) = [m for m in without_policy if m.cls is BodyLimitMiddleware]
    assert BodyLimitMiddleware(app=None, **plain.kwargs).limit_for(CHAT_PATH) == 3_069_632  # type: ignore[arg-type]


def test_error_shape_follows_the_path() -> None:
    assert error_body("/v1/classify", "too big") == {"detail": "too big"}
    chat = error_body(CHAT_PATH, "too big")["error"]
    assert chat["message"] == "too big" and chat["code"] == chat["type"] == "invalid_request_error"


def _dependency_calls(dependant: object) -> list[object]:
    calls = []
    for sub in getattr(dependant, "dependencies", []):
        calls.append(sub.call)
        calls.extend(_dependency_calls(sub))
    return calls


def test_hot_path_dependencies_run_on_the_event_loop(tmp_path: Path) -> None:
    """FastAPI runs a plain `def` dependency in its thread pool (one thread hand-off each per request);
    the classify route's dependencies, with and without an API key, must all be coroutines."""
    import inspect

    from fastapi.routing import APIRoute

    from serving.app.classify import classify_router

    for settings in (
        ServeSettings(model=str(tmp_path)),
        ServeSettings(model=str(tmp_path), api_key="s3cret"),
    ):
        (route,) = [r for r in classify_router(settings).routes if isinstance(r, APIRoute)]
        assert route.path == "/v1/classify"
        calls = _dependency_calls(route.dependant)
        assert len(calls) >= (4 if settings.api_key else 2)  # service + inference (+ key, bearer, header)
        for call in calls:
            target = call if inspect.isfunction(call) else type(call).__call__  # security schemes: instances
            assert inspect.iscoroutinefunction(target), f"{call!r} would run in the thread pool"
