"""Differential tests: FlowService against a real Prefect 3.9.1 server on the same database."""
