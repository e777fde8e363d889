"""`python -m cli` runs the `retrieve` command line."""

from cli.main import main

main()
