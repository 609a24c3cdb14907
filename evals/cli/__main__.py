"""`python -m evals.cli ...`: the `tierroute` command without the installed script."""

from evals.cli.root import main

main()
