"""Pump workers: any worker runs any step of any tenant's flow."""
