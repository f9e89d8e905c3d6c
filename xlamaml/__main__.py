"""`python -m xlamaml`: the command line (xlamaml/cli.py)."""

from xlamaml.cli import main

raise SystemExit(main())
