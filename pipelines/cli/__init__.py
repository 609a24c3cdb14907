"""Command-line area of `pipelines`: one module per stage (`train`, `data`, `registry`, `gate`,
`demo`), each mounting its commands with `register(root, bench)`. Heavy imports happen inside
command bodies so `tierroute --help` stays fast and works in a serving-only install.
"""
