"""FlowService's server: Prefect 3's flow model over gRPC, on SQLite or PostgreSQL."""
