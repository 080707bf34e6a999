"""Custom models as plugins: the API (api.py), discovery (discovery.py), the runner shared by the
Serve deployment and `rawinfer plugins check` (runner.py) and the scaffold (scaffold.py); the CLI
is rawinfer/cli/plugins.py. See docs/plugins.md."""
