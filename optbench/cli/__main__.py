"""`python -m optbench.cli` runs the same command line as `optbench`."""

from optbench.cli.app import main

main()
