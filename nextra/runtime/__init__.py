"""Long-running loops: the projector now, pump workers and schedulers later."""
