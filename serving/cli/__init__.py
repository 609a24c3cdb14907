"""Command-line area of `serving`: `tierroute serve` (`serve`), `tierroute bench http` (`bench`, with
its load generator `loadgen`), and what every package's commands share: the error helper
(`errors.fail`) and the offline environment (`env`). The router's commands live in
`serving/router/cli.py`; every area is mounted on the root app by its `register(root, bench)`.
"""
