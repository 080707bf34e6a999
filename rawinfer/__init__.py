"""rawinfer: shared pieces (settings, catalog, storage, CLI) of the raw inference service."""
