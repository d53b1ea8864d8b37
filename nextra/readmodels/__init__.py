"""Read models: Postgres tables projected from the event streams, and their queries."""
