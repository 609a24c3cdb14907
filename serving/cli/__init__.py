"""Command-line area of `serving`: `tierroute serve` and `tierroute bench http` (`serve`), and the
error helper every package's commands share (`errors.fail`). The router's commands still live in
`serving/router/cli.py`; every area is mounted on the root app by its `register(root, bench)`.
"""
