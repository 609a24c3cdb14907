"""The classify service over HTTP: `create_app(settings)` (`build`) mounts `/v1/classify` (`classify`),
ops and admin endpoints (`ops`) and the optional gate/chat routes; `lifecycle` starts and stops the
model, inference pool and poller; `service` holds shared state, dependencies and the API-key check;
`errors` the JSON error shape and middleware; `schemas` and `metrics` what it answers and counts.
"""

from serving.app.build import create_app

__all__ = ["create_app"]
