"""Rerunnable benchmarks of the classifier: in-process bundle latency and embedding throughput
(`classify`), the truncation/precision variants behind the defaults (`variants`), and the static fast
path vs MiniLM vs two-stage (`fast`).
"""
