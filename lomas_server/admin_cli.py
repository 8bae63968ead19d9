"""``lomas-admin``: the administrator's command line over the admin store.

Runs beside (or without) a running server: both open the same store, whose transactions keep
them consistent. Tokens are printed once, at creation or rotation; only hashes are stored.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from lomas_server.admin_cli_options import command_line
from lomas_server.errors import ServiceError
from lomas_server.service.admin import AdminService
from lomas_server.service.backup import counts, export_store, restore_store
from lomas_server.service.budget_requests import BudgetRequests
from lomas_server.service.lomas_import import LomasImporter
from lomas_server.store import open_store


def _pair(epsilon: float | None, delta: float | None, what: str) -> tuple[float, float] | None:
    if epsilon is None and delta is None:
        return None
    if epsilon is None:
        raise ServiceError(f"give --{what}-epsilon together with --{what}-delta")
    return (epsilon, delta if delta is not None else 0.0)


# -- commands ----------------------------------------------------------------------------------
def _add_user(admin: AdminService, args: argparse.Namespace) -> Any:
    if args.hub:
        if args.admin:
            raise ServiceError(
                "--admin does not apply to --hub users: the Hub's admin groups say who administers"
            )
        admin.add_hub_user(args.name)
        return {"user": args.name, "token": None, "note": "signs in with their JupyterHub token"}
    token = admin.add_user(args.name, is_admin=args.admin)
    return {
        "user": args.name,
        "token": token,
        "note": "store this token now: it is not shown again",
    }


def _rotate(admin: AdminService, args: argparse.Namespace) -> Any:
    return {
        "user": args.name,
        "token": admin.rotate_token(args.name),
        "note": "the previous token no longer works",
    }


def _block(admin: AdminService, args: argparse.Namespace) -> Any:
    admin.set_may_query(args.name, args.command == "unblock")
    return {"user": args.name, "may_query": args.command == "unblock"}


def _list_users(admin: AdminService, args: argparse.Namespace) -> Any:
    return admin.user_views()


def _add_dataset(admin: AdminService, args: argparse.Namespace) -> Any:
    try:
        metadata = yaml.safe_load(Path(args.metadata).read_text(encoding="utf-8"))
    except OSError as err:
        raise ServiceError(f"cannot read metadata file {args.metadata}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ServiceError(f"metadata file {args.metadata} is not valid YAML: {err}") from err
    record = admin.add_dataset(
        args.name,
        args.file,
        metadata,
        file_format=args.format,
        max_query=_pair(args.max_query_epsilon, args.max_query_delta, "max-query"),
        cap=_pair(args.cap_epsilon, args.cap_delta, "cap"),
        source_options=_source_options(args),
        check_data=not args.no_check,
        accounting=args.accounting,
        conversion_delta=args.conversion_delta,
        engine=args.engine,
    )
    return {
        "dataset": record.name,
        "source": admin.public_source(record),
        "columns": list(record.metadata["columns"]),
    }


def _source_options(args: argparse.Namespace) -> dict[str, Any]:
    """Where-to-read options; secrets are read from the environment, never from the command
    line (where the shell history and the process list would show them)."""
    options: dict[str, Any] = {}
    if args.s3_endpoint:
        options["endpoint_url"] = args.s3_endpoint
    if args.s3_region:
        options["region"] = args.s3_region
    if args.s3_credentials_from_env:
        options["access_key_id"] = _env("LOMAS_S3_ACCESS_KEY_ID")
        options["secret_access_key"] = _env("LOMAS_S3_SECRET_ACCESS_KEY")
    headers = {}
    for item in args.http_header_from_env:
        header, sep, variable = item.partition("=")
        if not sep or not header.strip() or not variable.strip():
            raise ServiceError(f"--http-header-from-env takes HEADER=ENVVAR, not {item!r}")
        headers[header.strip()] = _env(variable.strip())
    if headers:
        options["headers"] = headers
    return options


def _env(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        raise ServiceError(f"environment variable {variable} is not set")
    return value


def _set_limits(admin: AdminService, args: argparse.Namespace) -> Any:
    max_query = _pair(args.max_query_epsilon, args.max_query_delta, "max-query")
    cap = _pair(args.cap_epsilon, args.cap_delta, "cap")
    admin.set_limits(args.name, max_query=max_query, cap=cap)
    return {"dataset": args.name, "max_query": max_query, "cap": cap}


def _list_datasets(admin: AdminService, args: argparse.Namespace) -> Any:
    # The admin API's view: what all users spent is "spent", the rule its mode and delta.
    return admin.dataset_views()


def _grant(admin: AdminService, args: argparse.Namespace) -> Any:
    admin.grant(args.user, args.dataset, args.epsilon, args.delta)
    return {
        "user": args.user,
        "dataset": args.dataset,
        "epsilon": args.epsilon,
        "delta": args.delta,
    }


def _budget(admin: AdminService, args: argparse.Namespace) -> Any:
    return admin.budgets(args.user)


def _archive(admin: AdminService, args: argparse.Namespace) -> Any:
    return [
        {
            "query_id": e.query_id,
            "dataset": e.dataset,
            "engine": e.engine,
            "query": e.request.get("query"),
            "epsilon": e.request.get("epsilon"),
            "delta": e.request.get("delta"),
            "cost": e.cost.as_dict(),
            "status": e.status,
            "created_at": e.created_at,
            "error": e.error,
        }
        for e in admin.archive(args.user, args.dataset)
    ]


def _budget_requests(admin: AdminService, args: argparse.Namespace) -> Any:
    found = BudgetRequests(admin.store).list(state=args.state, user=args.user, dataset=args.dataset)
    if args.json:
        return found
    # A table a terminal can hold: reasons and notes (up to 2000 characters) cut short.
    keep = ("id", "user", "dataset", "requested", "state", "created_at", "granted")
    return [
        {
            **{key: r[key] for key in keep},
            "reason": _short(r["reason"]),
            "note": _short(r["note"]),
        }
        for r in found
    ]


def _short(text: str | None, width: int = 40) -> str | None:
    if text is None:
        return None
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _approve(admin: AdminService, args: argparse.Namespace) -> Any:
    return BudgetRequests(admin.store).approve(
        args.id, _decider(args), epsilon=args.epsilon, delta=args.delta, note=args.note
    )


def _deny(admin: AdminService, args: argparse.Namespace) -> Any:
    return BudgetRequests(admin.store).deny(args.id, _decider(args), args.note)


def _decider(args: argparse.Namespace) -> str:
    """Who decides: the CLI has no lomas identity, so the login name stands for the admin."""
    if args.by:
        return str(args.by)
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a user entry)
        return "lomas-admin"


def _import_lomas(admin: AdminService, args: argparse.Namespace) -> Any:
    remap = {}
    for item in args.remap:
        old, sep, new = item.partition("=")
        if not sep or not old:
            raise ServiceError(f"--remap {item!r}: write OLD=NEW")
        remap[old] = new
    importer = LomasImporter(
        admin, remap=remap, base=args.relative_to, check_data=not args.no_check
    )
    report = importer.run(args.files).as_dict()
    report["note"] = "store the tokens now: they are not shown again"
    return report


def _export(admin: AdminService, args: argparse.Namespace) -> Any:
    backup = export_store(admin.store)
    text = yaml.safe_dump(backup, sort_keys=False, allow_unicode=True)
    try:
        fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as err:
        raise ServiceError(f"cannot write {args.file}: {err.strerror}") from err
    return {
        "file": str(args.file),
        **counts(backup),
        "note": "it holds dataset credentials: keep it private",
    }


def _restore(admin: AdminService, args: argparse.Namespace) -> Any:
    try:
        backup = yaml.safe_load(args.file.read_text(encoding="utf-8"))
    except OSError as err:
        raise ServiceError(f"cannot read {args.file}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ServiceError(f"{args.file} is not valid YAML: {err}") from err
    return {"file": str(args.file), **restore_store(admin.store, backup)}


COMMANDS: dict[str, Callable[[AdminService, argparse.Namespace], Any]] = {
    "add-user": _add_user,
    "rotate-token": _rotate,
    "block": _block,
    "unblock": _block,
    "list-users": _list_users,
    "add-dataset": _add_dataset,
    "set-limits": _set_limits,
    "list-datasets": _list_datasets,
    "grant": _grant,
    "budget": _budget,
    "archive": _archive,
    "budget-requests": _budget_requests,
    "approve": _approve,
    "deny": _deny,
    "import-lomas": _import_lomas,
    "export": _export,
    "restore": _restore,
}


# -- output ------------------------------------------------------------------------------------
def _flatten(row: dict[str, Any]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in row.items():
        if isinstance(value, dict) and set(value) <= {"epsilon", "delta"} and value:
            flat[key] = f"eps={value['epsilon']:g} delta={value['delta']:g}"
        elif isinstance(value, dict) and "mode" in value:  # an accounting rule
            flat[key] = value["mode"]
            if "spent" in value:
                flat[key] += f" (rho {value['spent']['rho']:g} of {value['initial']['rho']:g})"
        elif isinstance(value, dict):
            flat[key] = json.dumps(value)
        elif isinstance(value, str):
            # One line per row: a reason or note written over several lines stays in its cell.
            flat[key] = " ".join(value.split())
        else:
            flat[key] = "" if value is None else str(value)
    return flat


def _text_item(key: str, value: Any) -> str:
    """One entry of a report; lists and mappings get a line per item."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return f"{key}:" + "".join(f"\n  - {item}" for item in value) if value else f"{key}: (none)"
    if isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values()):
        return f"{key}:" + "".join(f"\n  {k}: {v}" for k, v in value.items())
    return f"{key}: {_flatten({key: value})[key]}"


def _text(result: Any) -> str:
    if isinstance(result, dict):
        return "\n".join(_text_item(key, value) for key, value in result.items())
    rows = [_flatten(row) for row in result]
    if not rows:
        return "(none)"
    headers = list(rows[0])
    widths = {h: max(len(h), *(len(r.get(h, "")) for r in rows)) for h in headers}
    lines = ["  ".join(h.ljust(widths[h]) for h in headers)]
    lines += ["  ".join(r.get(h, "").ljust(widths[h]) for h in headers) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_line()
    args = parser.parse_args(argv)
    try:
        store = open_store(args.store)
    except ServiceError as err:
        print(f"lomas-admin: {err.message}", file=sys.stderr)
        return 2
    try:
        result = COMMANDS[args.command](AdminService(store), args)
    except ServiceError as err:
        print(f"lomas-admin: {err.message}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(json.dumps(result, indent=2) if args.json else _text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
