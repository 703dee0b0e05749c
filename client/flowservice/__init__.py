"""FlowService's Python client: generated `flowservice.v1` code and a typed client.

Import the client from `flowservice.client`; this package module stays empty so
that importing the generated messages alone stays cheap.
"""
