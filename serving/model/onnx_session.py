"""ONNX Runtime session factory with the settings that matter on a small CPU box.

Job: one place that creates inference sessions. Trade-off: spinning intra-op threads make a
single session a little faster but make several sessions in one process (classifier + gate,
or the old and new model during a hot reload) fight for the cores (7 ms became 35 ms when measured on a
2-core box), so spinning is off and the thread count is explicit.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort


def make_session(model_path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with `threads` intra-op threads and no spinning."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
