"""``python -m nextra`` runs the ``nextra`` command."""

from nextra.cli.main import main

main()
