"""Use cases: load an aggregate, decide, append; retried on a concurrent change."""
