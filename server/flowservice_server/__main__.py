"""`python -m flowservice_server` is the `flowservice` command."""

from flowservice_server.cli import main

raise SystemExit(main())
