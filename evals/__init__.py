"""Evaluation, drift checks, threshold calibration, the promotion gate on extra labelled sets, and the
`tierroute` root app. May import both `serving` and `pipelines`.
"""
