"""Flows: the organism.yaml document, its validation, and its canvas."""
