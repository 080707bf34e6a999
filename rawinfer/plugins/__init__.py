"""Custom models as plugins: the API (api.py), discovery (discovery.py), the runner shared by the
Serve deployment and `rawinfer plugins check` (runner.py), and the CLI (cli.py). See
docs/plugins.md."""
