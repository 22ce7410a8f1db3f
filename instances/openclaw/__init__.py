"""Everything that knows OpenClaw itself (not the engine it runs on): its config file
(config.py: owned paths, JSON5) and its CLI and RPCs inside a gateway's container (client.py).
The runtime adapters move bytes and run commands; this package knows what to run."""
