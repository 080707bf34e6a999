"""rawinfer dev-init | prepare: the development namespace and key, one-time model preparation."""

from __future__ import annotations

import os
from pathlib import Path

from rawinfer.cli.common import _store, cmd
from rawinfer.core.settings import DEV_NAMESPACE, Settings


def dev_init(args) -> None:
    """Creates the `dev` namespace and a development key once; the key is kept in
    .rawinfer/dev-key (mode 600) so `make run` can print it again on later starts."""
    store = _store(args)
    ns = store.find_namespace(DEV_NAMESPACE) or store.create_namespace(DEV_NAMESPACE)
    key_file = Path(args.key_file)
    secret = key_file.read_text().strip() if key_file.exists() else ""
    if not secret or store.authenticate(secret) is None:
        _, secret = store.create_key("development", namespaces=[ns.id])
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
    host = args.url.rstrip("/")
    print(f"namespace: {ns.name} ({ns.id})\napi key:   {secret}   (kept in {key_file})\n")
    print(
        "try:\n"
        f"  curl -s {host}/v1/inference -H 'Authorization: Bearer {secret}' -H 'X-Namespace: "
        f"{ns.name}' \\\n"
        "    -H 'Content-Type: application/json' \\\n"
        "    -d "
        '\'{"inference_name": "multilingual_e5_large_instruct_v1", '
        '"inputs": {"text": "hello world"}}\''
    )


def prepare(args) -> None:
    from rawinfer.cli.prepare import main as prepare_main

    prepare_main()


def add_parser(sub) -> None:
    c = cmd(
        sub, "dev-init", dev_init, help="create the dev namespace and key if missing; print a curl"
    )
    c.add_argument("--key-file", default=str(Settings().dev_key_file))
    c.add_argument("--url", default="http://127.0.0.1:8000")
    cmd(
        sub,
        "prepare",
        prepare,
        help="one-time model preparation (join whisper parts, convert GGUF)",
    )
