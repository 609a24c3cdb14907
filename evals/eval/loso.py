"""Leave-one-source-out routing value: lives in `pipelines.train.loso` (`tierroute train` reports it).

Re-exported here for the evaluation code (`evals.eval.routing_experiments`) and its users.
"""

from pipelines.train.loso import FitScore, LosoResult, leave_one_source_out, markdown_table, mean_apgr

__all__ = ["FitScore", "LosoResult", "leave_one_source_out", "markdown_table", "mean_apgr"]
