"""Manage API keys: ``python -m starter.auth create --name ci-bot --role operator`` (prints the key ONCE).

``list`` shows ids, names and roles (never digests); ``revoke ID_OR_NAME`` removes keys. The key file is
``security.api_keys_file`` of the chosen config (``--config`` / ``--config-name``), or ``--keys-file``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flywheel.config import ConfigError, load_settings
from starter.auth.api_keys import KeyFileError, KeyStore
from starter.auth.authenticator import default_keys_file
from starter.auth.roles import Role


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m starter.auth", description="Manage starter API keys.")
    parser.add_argument("--config", help="YAML config path.")
    parser.add_argument("--config-name", help="Named config (e.g. demo).")
    parser.add_argument("--keys-file", type=Path, help="Key file (wins over the config).")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="Create a key and print it once.")
    create.add_argument("--name", required=True, help="Who or what uses the key (recorded on its actions).")
    create.add_argument("--role", action="append", required=True, choices=[r.value for r in Role],
                        help="A role (repeatable).")
    create.add_argument("--quiet", action="store_true", help="Print only the key.")
    sub.add_parser("list", help="List keys (id, name, roles, created).")
    revoke = sub.add_parser("revoke", help="Remove keys by id or name.")
    revoke.add_argument("key", help="Key id or name.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = args.keys_file
    if path is None:
        try:
            path = default_keys_file(load_settings(path=args.config, config_name=args.config_name))
        except ConfigError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return 2
    store = KeyStore(path)
    try:
        if args.command == "create":
            token, stored = store.create(args.name, args.role)
            if args.quiet:
                print(token)
            else:
                print(f"created key {stored.id} for {stored.name} "
                      f"(roles: {', '.join(sorted(r.value for r in stored.roles))}) in {path}")
                print("It is shown only this once; store it in a secret manager or an env var:")
                print(f"  export FLYWHEEL_API_KEY={token}")
        elif args.command == "list":
            for key in store.keys().values():
                print(f"{key.id}  {key.name}  {','.join(sorted(r.value for r in key.roles))}  {key.created_at}")
        else:
            removed = store.revoke(args.key)
            print(f"revoked {removed} key(s)")
            return 0 if removed else 1
    except (KeyFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
