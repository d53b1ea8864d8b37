"""A trusted module that fails to import, as a broken self-hosted handler would."""

raise RuntimeError("this module is broken on purpose")
