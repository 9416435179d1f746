"""``python -m nixdistill`` runs the CLI."""

from .cli import main

main()
