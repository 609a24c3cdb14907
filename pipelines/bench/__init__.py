"""Rerunnable benchmarks of the classifier: in-process bundle latency and embedding throughput
(`classify`), and the truncation/precision variants behind the defaults (`variants`).
"""
