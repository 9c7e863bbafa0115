"""`python -m shopflow.cli` runs the command line."""

from shopflow.cli.main import main

main()
