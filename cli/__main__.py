"""``python -m gaussnll.cli``."""

from gaussnll.cli.app import main

main()
