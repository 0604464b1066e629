"""The front: Prefect flows and the entry points a person uses (CLI, annotation UI)."""
