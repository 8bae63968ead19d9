"""The grammar of ``lomas-admin``: its commands, their arguments and help (admin_cli.py runs them)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lomas_server.accounting import DEFAULT_CONVERSION_DELTA

DEFAULT_STORE = "sqlite:///lomas-admin.sqlite"


def command_line() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lomas-admin",
        description="Manage users, datasets and privacy budgets of a lomas-jupyter DP server.",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get("LOMAS_STORE_URL", DEFAULT_STORE),
        help="admin store URL, e.g. sqlite:///path/admin.sqlite (env LOMAS_STORE_URL; default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("add-user", help="create a user and print their API token (shown once)")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="give the user admin rights")
    p.add_argument(
        "--hub",
        action="store_true",
        help="a JupyterHub user, to grant budgets before their first call: no lomas token "
        "(they sign in with their Hub token; the Hub's groups say who administers)",
    )

    p = sub.add_parser("rotate-token", help="replace a user's API token and print the new one")
    p.add_argument("name")

    p = sub.add_parser("block", help="stop a user from running queries (budget and archive stay)")
    p.add_argument("name")
    p = sub.add_parser("unblock", help="let a blocked user run queries again")
    p.add_argument("name")

    sub.add_parser("list-users", help="list users")

    p = sub.add_parser(
        "add-dataset",
        help="register a dataset (file, S3, HTTP, PostgreSQL or Spark) with its metadata YAML",
    )
    p.add_argument("name")
    p.add_argument(
        "--file",
        required=True,
        metavar="LOCATION",
        help="a CSV or Parquet path, s3://BUCKET/KEY, http(s)://URL, "
        "postgresql://USER@HOST/DB?table=NAME, or a Parquet file or folder with --engine spark",
    )
    p.add_argument(
        "--metadata", required=True, help="path to the metadata YAML (lomas/SmartNoise-SQL format)"
    )
    p.add_argument(
        "--format", choices=["csv", "parquet"], help="file format (default: from the suffix)"
    )
    p.add_argument(
        "--engine",
        choices=["duckdb", "spark"],
        help="where SQL queries run: duckdb (default; in the server) or spark (for data past "
        "one machine; set LOMAS_SPARK_MASTER on the server for a cluster)",
    )
    p.add_argument(
        "--accounting",
        choices=["basic", "zcdp"],
        default="basic",
        help="how costs add up: basic (sum of epsilons and deltas, as lomas) or zcdp "
        "(zero-concentrated DP); fixed once the dataset is added (default: %(default)s)",
    )
    p.add_argument(
        "--conversion-delta",
        type=float,
        default=DEFAULT_CONVERSION_DELTA,
        help="with --accounting zcdp: the delta at which budgets are shown in (epsilon, delta) "
        "(default: %(default)s)",
    )
    p.add_argument("--s3-endpoint", help="S3 endpoint URL, for S3-compatible stores")
    p.add_argument("--s3-region", help="S3 region")
    p.add_argument(
        "--s3-credentials-from-env",
        action="store_true",
        help="store the S3 key pair in LOMAS_S3_ACCESS_KEY_ID/LOMAS_S3_SECRET_ACCESS_KEY with "
        "the dataset (default: the server's own AWS environment at query time)",
    )
    p.add_argument(
        "--http-header-from-env",
        action="append",
        default=[],
        metavar="HEADER=ENVVAR",
        help="send this HTTP header, its value read from the environment variable (repeatable)",
    )
    p.add_argument(
        "--no-check",
        action="store_true",
        help="register without reading the data now (it is still checked before each query)",
    )
    _limit_options(p)

    p = sub.add_parser("set-limits", help="set a dataset's per-query maximum and dataset-wide cap")
    p.add_argument("name")
    _limit_options(p)

    sub.add_parser("list-datasets", help="list datasets with their limits and total spend")

    p = sub.add_parser("grant", help="set a user's budget on a dataset (replaces the previous one)")
    p.add_argument("user")
    p.add_argument("dataset")
    p.add_argument("--epsilon", type=float, required=True)
    p.add_argument("--delta", type=float, required=True)

    p = sub.add_parser("budget", help="show a user's budgets: initial, spent, remaining")
    p.add_argument("user")

    p = sub.add_parser("archive", help="show a user's archived queries")
    p.add_argument("user")
    p.add_argument("--dataset", help="only queries on this dataset")

    p = sub.add_parser("budget-requests", help="list analysts' requests for more budget")
    p.add_argument("--state", choices=["pending", "approved", "denied"])
    p.add_argument("--user", help="only this user's requests")
    p.add_argument("--dataset", help="only requests on this dataset")

    p = sub.add_parser(
        "approve",
        help="approve a budget request: the user's grant on the dataset grows by it",
    )
    p.add_argument("id", help="the request's id (see budget-requests)")
    p.add_argument("--epsilon", type=float, help="grant this epsilon instead of the requested")
    p.add_argument("--delta", type=float, help="grant this delta instead of the requested")
    p.add_argument("--note", help="a word for the analyst")
    _by_option(p)

    p = sub.add_parser("deny", help="deny a budget request, saying why")
    p.add_argument("id", help="the request's id (see budget-requests)")
    p.add_argument("--note", required=True, help="why, for the analyst")
    _by_option(p)

    p = sub.add_parser(
        "import-lomas",
        help="import users, budgets and datasets from lomas's YAML collection files",
        description="Import a lomas admin database: its user collection and dataset collection "
        "files (YAML). Users get new API tokens, printed once; what they spent is kept.",
    )
    p.add_argument(
        "files",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="user_collection.yaml, dataset_collection.yaml",
    )
    p.add_argument(
        "--remap",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="rewrite paths and URLs starting with OLD to start with NEW (repeatable)",
    )
    p.add_argument(
        "--relative-to", type=Path, help="folder for relative paths (default: each file's folder)"
    )
    p.add_argument(
        "--no-check", action="store_true", help="import datasets without reading their data"
    )

    p = sub.add_parser("export", help="write a full backup of the admin store (keep it private)")
    p.add_argument("file", type=Path)
    p = sub.add_parser("restore", help="load a backup into an empty admin store")
    p.add_argument("file", type=Path)
    return parser


def _limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-query-epsilon", type=float, help="largest epsilon one query may cost"
    )
    parser.add_argument(
        "--max-query-delta", type=float, default=None, help="largest delta one query may cost"
    )
    parser.add_argument(
        "--cap-epsilon", type=float, help="dataset-wide epsilon cap (sum over users)"
    )
    parser.add_argument("--cap-delta", type=float, default=None, help="dataset-wide delta cap")


def _by_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--by",
        default=None,
        metavar="NAME",
        help="the admin deciding, as the analyst will read it (default: your login name)",
    )
