"""IPython magics for DP queries: ``%load_ext lomas_jupyter``.

A thin layer over ``Client``: argument parsing in IPython's ``magic_arguments`` style,
``VAR <<`` assignment and ``{{name}}`` templating as in JupySQL, defaults configurable with
``%config LomasMagic.<trait>``, and errors as one readable line instead of a traceback.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

import jinja2
import pandas as pd
import yaml
from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Configurable

from lomas_jupyter.client import Client, LomasError, table_frame
from lomas_jupyter.display import BudgetDisplay

F = TypeVar("F", bound=Callable[..., Any])
_ASSIGN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*<<\s*")


def _friendly_errors(method: F) -> F:
    """Turn any lomas error into one line (UsageError) unless short_errors is off."""

    @functools.wraps(method)
    def wrapper(self: LomasMagic, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (LomasError, _ServerSideError) as err:
            if not self.short_errors:
                raise
            raise UsageError(str(err)) from None

    return wrapper  # type: ignore[return-value]


try:  # errors of the local dummy run, which uses the server's own guard and engine
    from lomas_server.errors import ServiceError as _ServerSideError
except ImportError:  # pragma: no cover - the client installed without the server
    _ServerSideError = LomasError  # type: ignore[misc,assignment]


@magics_class
class LomasMagic(Magics, Configurable):
    """Differentially private queries from notebooks (lomas-jupyter)."""

    dataset = Unicode("", help="Dataset used when a magic names none.").tag(config=True)
    epsilon = Float(0.5, help="Epsilon of %%lomas_sql when --epsilon is not given.").tag(
        config=True
    )
    delta = Float(
        0.0,
        help="Delta of %%lomas_sql when --delta is not given (datasets that hide rare groups need > 0).",
    ).tag(config=True)
    confirm_above = Float(
        1.0,
        help="Ask before running a query whose epsilon cost is above this (inf: never ask). "
        "Without a way to ask (e.g. a notebook run unattended), such a query needs --yes.",
    ).tag(config=True)
    dummy_rows = Int(1000, help="Rows of dummy data for %%lomas_sql --dummy.").tag(config=True)
    timeout = Float(120.0, help="Seconds to wait for the server.").tag(config=True)
    short_errors = Bool(
        True, help="Show errors as one line; False raises them with their traceback."
    ).tag(config=True)

    def __init__(self, shell: Any) -> None:
        Configurable.__init__(self, config=shell.config)
        Magics.__init__(self, shell=shell)
        self.client: Client | None = None

    # -- connection --------------------------------------------------------------------------
    @magic_arguments()
    @argument("url", nargs="?", help="server URL, e.g. http://127.0.0.1:8765")
    @argument("--token", help="your API token (default: LOMAS_TOKEN)")
    @argument("--file", help="a connection.json as written by 'lomas-server demo'")
    @argument("--dataset", help="make this the default dataset")
    @line_magic
    @_friendly_errors
    def lomas_connect(self, line: str) -> None:
        """Connect to a lomas DP server.

        With no arguments: LOMAS_URL and LOMAS_TOKEN, else the file in LOMAS_CONNECTION_FILE,
        else lomas-demo/connection.json in this folder or one above it.
        """
        args = parse_argstring(self.lomas_connect, line)
        self.client = self._new_client(args)
        datasets = self.client.datasets()
        names = [d["name"] for d in datasets]
        if args.dataset:
            if args.dataset not in names:
                raise LomasError(
                    f"no dataset {args.dataset!r} is available to you; you have: {', '.join(names)}"
                )
            self.dataset = args.dataset
        elif not self.dataset and len(names) == 1:
            self.dataset = names[0]
        who = f" as {self.client.user}" if self.client.user else ""
        print(
            f"Connected to {self.client.url}{who}. Datasets: {', '.join(names) or '(none)'}"
            + (f"; default dataset: {self.dataset}" if self.dataset else "")
        )

    def _new_client(self, args: Any) -> Client:
        options: dict[str, Any] = {"timeout": self.timeout}
        if args.file:
            return Client.from_file(args.file, **options)
        if args.url:
            token = args.token or os.environ.get("LOMAS_TOKEN")
            if not token:
                raise LomasError("give --token, or set LOMAS_TOKEN")
            return Client(args.url, token, **options)
        return Client.discover(**options)

    def _client(self) -> Client:
        if self.client is None:
            raise LomasError("not connected yet: run %lomas_connect first")
        return self.client

    def _dataset(self, name: str | None) -> str:
        chosen = name or self.dataset
        if not chosen:
            raise LomasError("which dataset? name it, or set %config LomasMagic.dataset = 'NAME'")
        return chosen

    # -- exploring ---------------------------------------------------------------------------
    @line_magic
    @_friendly_errors
    def lomas_datasets(self, line: str) -> pd.DataFrame:
        """The datasets you may query, with what is left of your budget on each."""
        rows = []
        for d in self._client().datasets():
            b = d["budget"]
            rows.append(
                {
                    "dataset": d["name"],
                    "epsilon left": b["remaining"]["epsilon"],
                    "delta left": b["remaining"]["delta"],
                    "epsilon spent": b["spent"]["epsilon"],
                    "delta spent": b["spent"]["delta"],
                    "max epsilon per query": d["max_query"]["epsilon"],
                }
            )
        return pd.DataFrame(rows)

    @magic_arguments()
    @argument("dataset", nargs="?")
    @line_magic
    @_friendly_errors
    def lomas_metadata(self, line: str) -> pd.DataFrame:
        """Columns, types, bounds and categories of a dataset (public metadata)."""
        args = parse_argstring(self.lomas_metadata, line)
        dataset = self._dataset(args.dataset)
        metadata = self._client().metadata(dataset)
        options = {k: v for k, v in metadata.items() if k != "columns"}
        print(f"{dataset}: " + ", ".join(f"{k}={v}" for k, v in options.items()))
        rows = [
            {
                "column": name,
                "type": spec.get("type"),
                "lower": spec.get("lower"),
                "upper": spec.get("upper"),
                "nullable": spec.get("nullable", True),
                "categories": spec.get("categories"),
            }
            for name, spec in metadata["columns"].items()
        ]
        return pd.DataFrame(rows)

    @magic_arguments()
    @argument("dataset", nargs="?")
    @line_magic
    @_friendly_errors
    def lomas_budget(self, line: str) -> None:
        """Your budget on a dataset, and how many more queries like your last one fit."""
        args = parse_argstring(self.lomas_budget, line)
        dataset = self._dataset(args.dataset)
        client = self._client()
        budget = client.budget(dataset)
        # Counted by the server in its own ledger units (rho on zCDP datasets).
        last = budget.get("last_query") or {}
        display(BudgetDisplay(dataset, budget, queries_left=last.get("queries_left")))

    @magic_arguments()
    @argument("dataset", nargs="?", help="only queries on this dataset")
    @line_magic
    @_friendly_errors
    def lomas_history(self, line: str) -> pd.DataFrame:
        """Your archived queries: what, when, at what cost, with what outcome."""
        args = parse_argstring(self.lomas_history, line)
        rows = [
            {
                "query_id": q["query_id"][:8],
                "dataset": q["dataset"],
                "query": q.get("query"),
                "epsilon": q.get("epsilon"),
                "delta": q.get("delta"),
                "cost epsilon": q["cost"]["epsilon"],
                "cost delta": q["cost"]["delta"],
                "status": q["status"],
                "at": q["created_at"],
            }
            for q in self._client().queries(args.dataset or self.dataset or None)
        ]
        return pd.DataFrame(
            rows,
            columns=[
                "query_id",
                "dataset",
                "query",
                "epsilon",
                "delta",
                "cost epsilon",
                "cost delta",
                "status",
                "at",
            ],
        )

    @magic_arguments()
    @argument("dataset", nargs="?")
    @argument("--rows", type=int, default=100, help="how many rows (default 100)")
    @argument("--seed", type=int, default=None, help="random seed, for the same rows again")
    @line_magic
    @_friendly_errors
    def lomas_dummy(self, line: str) -> pd.DataFrame:
        """Synthetic rows with the dataset's schema, made from metadata only: free."""
        args = parse_argstring(self.lomas_dummy, line)
        return self._client().dummy(self._dataset(args.dataset), rows=args.rows, seed=args.seed)

    # -- querying ----------------------------------------------------------------------------
    @magic_arguments()
    @argument("--dataset", "-d", help="dataset to query (default: LomasMagic.dataset)")
    @argument(
        "--epsilon", "-e", type=float, help="epsilon per noisy value (default: LomasMagic.epsilon)"
    )
    @argument("--delta", type=float, help="delta (default: LomasMagic.delta)")
    @argument("--estimate", action="store_true", help="show the cost and accuracy; spend nothing")
    @argument("--dummy", action="store_true", help="run here on dummy data; spend nothing")
    @argument(
        "--fresh",
        action="store_true",
        help="pay for a new release even if this exact query ran before",
    )
    @argument("--yes", "-y", action="store_true", help="do not ask before an expensive query")
    @argument("--no-postprocess", action="store_true", help="return the raw noisy aggregates")
    @argument("assign", nargs="*", help="VAR << stores the result in VAR")
    @cell_magic
    @_friendly_errors
    def lomas_sql(self, line: str, cell: str) -> pd.DataFrame | None:
        """Run the cell's SELECT with differential privacy and show the noisy result.

        The cell may start with 'VAR <<' and may use {{name}} to insert Python variables.
        """
        args = parse_argstring(self.lomas_sql, line)
        target, cell = _assignment(args.assign, cell)
        query = self._render(cell)
        dataset = self._dataset(args.dataset)
        epsilon = self.epsilon if args.epsilon is None else args.epsilon
        delta = self.delta if args.delta is None else args.delta
        client = self._client()

        def estimate() -> dict[str, Any]:
            return client.smartnoise_sql_cost(dataset, query, epsilon=epsilon, delta=delta)

        if args.estimate:
            return self._show_estimate(dataset, estimate())
        if args.dummy:
            result = self._dummy_sql(dataset, query, epsilon, delta, estimate)
        else:
            result = self._spend(
                dataset,
                estimate,
                lambda: client.smartnoise_sql_response(
                    dataset,
                    query,
                    epsilon=epsilon,
                    delta=delta,
                    postprocess=not args.no_postprocess,
                    fresh=args.fresh,
                ),
                args,
            )
        return self._deliver(target, result)

    @magic_arguments()
    @argument("--dataset", "-d", help="dataset to query (default: LomasMagic.dataset)")
    @argument(
        "--epsilon",
        "-e",
        type=float,
        help="Laplace noise spending this epsilon (default: LomasMagic.epsilon)",
    )
    @argument("--rho", type=float, help="Gaussian noise spending this rho (zero-concentrated DP)")
    @argument(
        "--accuracy",
        type=float,
        metavar="HALF_WIDTH",
        help="instead of a budget: the cheapest one giving this 95%% half-width",
    )
    @argument("--delta", type=float, help="delta, to group by columns whose values are not public")
    @argument("--estimate", action="store_true", help="show the cost and accuracy; spend nothing")
    @argument("--dummy", action="store_true", help="run here on dummy data; spend nothing")
    @argument(
        "--fresh",
        action="store_true",
        help="pay for a new release even if this exact query ran before",
    )
    @argument("--yes", "-y", action="store_true", help="do not ask before an expensive query")
    @argument("assign", nargs="*", help="VAR << stores the result in VAR")
    @cell_magic
    @_friendly_errors
    def lomas_opendp(self, line: str, cell: str) -> pd.DataFrame | None:
        """Run an OpenDP query described in the cell (YAML or JSON), built by the server.

        The cell holds 'aggregates' and optionally 'filters' and 'group_by', e.g.

            group_by: [species]
            aggregates:
              - {op: count}
              - {op: mean, column: bill_length_mm}
        """
        args = parse_argstring(self.lomas_opendp, line)
        target, cell = _assignment(args.assign, cell)
        query = _query_document(self._render(cell))
        dataset = self._dataset(args.dataset)
        request = {"query": query, **self._opendp_noise(args)}
        client = self._client()

        def estimate() -> dict[str, Any]:
            return client.opendp_cost(dataset, request)

        if args.estimate:
            return self._show_estimate(dataset, estimate())
        if args.dummy:
            result = self._dummy_opendp(dataset, request, estimate)
        else:
            result = self._spend(
                dataset,
                estimate,
                lambda: client.opendp_response(dataset, {**request, "fresh": args.fresh}),
                args,
            )
        return self._deliver(target, result)

    def _opendp_noise(self, args: Any) -> dict[str, Any]:
        if args.rho is not None and args.epsilon is not None:
            raise LomasError("give --epsilon (Laplace) or --rho (Gaussian), not both")
        gaussian = args.rho is not None
        noise: dict[str, Any] = {"mechanism": "gaussian" if gaussian else "laplace"}
        if args.accuracy is not None:
            noise["accuracy"] = {"half_width": args.accuracy, "confidence": 0.95}
        elif gaussian:
            noise["rho"] = args.rho
        else:
            noise["epsilon"] = self.epsilon if args.epsilon is None else args.epsilon
        delta = self.delta if args.delta is None else args.delta
        if delta:
            noise["delta"] = delta
        return noise

    # -- shared by the cell magics -------------------------------------------------------------
    def _render(self, cell: str) -> str:
        if "{{" not in cell and "{%" not in cell:
            return cell
        try:
            template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(cell)
            return template.render(**self._namespace())
        except jinja2.UndefinedError as err:
            raise LomasError(f"template: {err.message}") from None
        except jinja2.TemplateError as err:
            raise LomasError(f"template: {err}") from None

    def _deliver(self, target: str | None, result: pd.DataFrame | None) -> pd.DataFrame | None:
        if result is None or not target:
            return result
        self._namespace()[target] = result
        return None

    def _namespace(self) -> dict[str, Any]:
        """The notebook's variables (magics always run inside a shell)."""
        assert self.shell is not None
        return self.shell.user_ns

    def _show_estimate(self, dataset: str, estimate: dict[str, Any]) -> pd.DataFrame:
        note = None
        if estimate["replay_of"]:
            note = f"this exact query ran before (query {estimate['replay_of'][:8]}): rerunning it is free"
        elif not estimate["fits"]:
            note = "this query does not fit your remaining budget"
        display(
            BudgetDisplay(
                dataset, estimate["budget"], cost=estimate["cost"], kind="estimate", note=note
            )
        )
        accuracy = estimate["accuracy"]
        level = f"±{accuracy['confidence']:.0%}"
        costs = {v["name"]: v.get("epsilon") for v in accuracy["noisy_values"]}
        rows = []
        for c in accuracy["columns"]:
            row: dict[str, Any] = {"column": c["column"], "noisy values": len(c["noisy_values"])}
            shares = [costs.get(name) for name in c["noisy_values"]]
            if shares and all(
                share is not None for share in shares
            ):  # SmartNoise-SQL says per value
                row["epsilon"] = sum(shares)
            row[level] = c["half_width"]
            rows.append(row)
        return pd.DataFrame(rows)

    def _dummy_sql(
        self,
        dataset: str,
        query: str,
        epsilon: float,
        delta: float,
        estimate: Callable[[], dict[str, Any]],
    ) -> pd.DataFrame:
        from lomas_jupyter.dummy_run import run_on_dummy

        client, seed = self._client(), 0
        rows = client.dummy(dataset, rows=self.dummy_rows, seed=seed)
        run = run_on_dummy(
            client.metadata(dataset), rows, dataset, query, epsilon=epsilon, delta=delta, seed=seed
        )
        self._dummy_note(dataset, run.rows, estimate())
        return run.result

    def _dummy_opendp(
        self, dataset: str, request: dict[str, Any], estimate: Callable[[], dict[str, Any]]
    ) -> pd.DataFrame:
        from lomas_jupyter.dummy_run import run_opendp_on_dummy

        client = self._client()
        rows = client.dummy(dataset, rows=self.dummy_rows, seed=0)
        result = run_opendp_on_dummy(client.metadata(dataset), rows, dataset, request)
        self._dummy_note(dataset, len(rows), estimate())
        return result

    @staticmethod
    def _dummy_note(dataset: str, rows: int, estimate: dict[str, Any]) -> None:
        cost = estimate["cost"]
        print(
            f"Dummy run on {rows} synthetic rows: nothing spent. On {dataset} this query "
            f"would cost epsilon={cost['epsilon']:g}, delta={cost['delta']:g}."
        )

    def _spend(
        self,
        dataset: str,
        estimate: Callable[[], dict[str, Any]],
        run: Callable[[], dict[str, Any]],
        args: Any,
    ) -> pd.DataFrame | None:
        """Ask first when the query is expensive (and not a free replay), then run it."""
        if not args.yes and math.isfinite(self.confirm_above):
            known = estimate()
            free = known["replay_of"] is not None and not args.fresh
            cost = known["cost"]["epsilon"]
            if not free and cost > self.confirm_above and not self._confirm(dataset, cost):
                print("Not run: nothing spent.")
                return None
        reply = run()
        replay = reply.get("replay_of")
        display(
            BudgetDisplay(
                dataset,
                reply["budget"],
                cost=reply["cost"],
                kind="replay" if replay else "query",
                query_id=reply["query_id"],
                replay_of=replay,
                note="the same noisy answer as before; add --fresh to pay for a new one"
                if replay
                else None,
            )
        )
        return table_frame(reply["result"])

    def _confirm(self, dataset: str, cost: float) -> bool:
        prompt = (
            f"This query costs epsilon={cost:g} on {dataset}, above "
            f"LomasMagic.confirm_above={self.confirm_above:g}. Run it? [y/N] "
        )
        try:
            answer = input(prompt)
        except (StdinNotImplementedError, EOFError, OSError):
            raise LomasError(
                f"this query costs epsilon={cost:g}, above LomasMagic.confirm_above="
                f"{self.confirm_above:g}, and there is no way to ask here: add --yes to run it"
            ) from None
        return answer.strip().lower() in ("y", "yes")


def _query_document(text: str) -> Any:
    """The cell of %%lomas_opendp: YAML (of which JSON is a part)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise LomasError(f"the cell is not valid YAML or JSON: {err}") from None
    if not isinstance(document, dict):
        raise LomasError(
            "the cell describes the query: 'aggregates', and optionally 'filters' and 'group_by'"
        )
    return document


def _assignment(tokens: list[str], cell: str) -> tuple[str | None, str]:
    """Find 'VAR <<' on the magic line or at the start of the cell."""
    if tokens:
        if len(tokens) == 2 and tokens[1] == "<<" and tokens[0].isidentifier():
            return tokens[0], cell
        if len(tokens) == 1 and tokens[0].endswith("<<") and tokens[0][:-2].isidentifier():
            return tokens[0][:-2], cell
        raise LomasError(
            f"unexpected {' '.join(tokens)!r} on the magic line; to store the result write 'VAR <<'"
        )
    match = _ASSIGN.match(cell)
    if match:
        return match.group(1), cell[match.end() :]
    return None, cell
