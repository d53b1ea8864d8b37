"""The composition root: settings, adapters and processes, behind the ``nextra`` command."""
