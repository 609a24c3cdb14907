"""The response-acceptability gate: deterministic checks, a learned (prompt, response) model, /v1/gate.

Import cost matters (the router imports this on its hot path): only the deterministic checks are
re-exported here; `serving.gate.model` (onnxruntime) and `serving.gate.http` (FastAPI) are imported
by those who need them.
"""

from serving.gate.checks import REASONS, CheckResult, InvalidSchemaError, check_response, default_min_chars

__all__ = ["REASONS", "CheckResult", "InvalidSchemaError", "check_response", "default_min_chars"]
