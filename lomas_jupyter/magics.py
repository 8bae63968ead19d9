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
    from lomas_server.errors import LomasError as _ServerSideError
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
        options = {"timeout": self.timeout}
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
        display(
            BudgetDisplay(
                dataset, budget, queries_left=_queries_left(client.queries(dataset), budget)
            )
        )

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
        if args.dummy:
            result = self._dummy_run(dataset, query, epsilon, delta)
        elif args.estimate:
            return self._estimate(dataset, query, epsilon, delta)
        else:
            result = self._release(client, dataset, query, epsilon, delta, args)
            if result is None:
                return None
        if target:
            self.shell.user_ns[target] = result
            return None
        return result

    def _render(self, cell: str) -> str:
        if "{{" not in cell and "{%" not in cell:
            return cell
        try:
            template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(cell)
            return template.render(**self.shell.user_ns)
        except jinja2.UndefinedError as err:
            raise LomasError(f"template: {err.message}") from None
        except jinja2.TemplateError as err:
            raise LomasError(f"template: {err}") from None

    def _estimate(self, dataset: str, query: str, epsilon: float, delta: float) -> pd.DataFrame:
        estimate = self._client().smartnoise_sql_cost(dataset, query, epsilon=epsilon, delta=delta)
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
        costs = {v["name"]: v["epsilon"] for v in accuracy["noisy_values"]}
        return pd.DataFrame(
            [
                {
                    "column": c["column"],
                    "noisy values": len(c["noisy_values"]),
                    "epsilon": sum(costs[name] for name in c["noisy_values"]),
                    level: c["half_width"],
                }
                for c in accuracy["columns"]
            ]
        )

    def _dummy_run(self, dataset: str, query: str, epsilon: float, delta: float) -> pd.DataFrame:
        from lomas_jupyter.dummy_run import run_on_dummy

        client = self._client()
        seed = 0
        rows = client.dummy(dataset, rows=self.dummy_rows, seed=seed)
        run = run_on_dummy(
            client.metadata(dataset), rows, dataset, query, epsilon=epsilon, delta=delta, seed=seed
        )
        cost = client.smartnoise_sql_cost(dataset, query, epsilon=epsilon, delta=delta)["cost"]
        print(
            f"Dummy run on {run.rows} synthetic rows: nothing spent. On {dataset} this query "
            f"would cost epsilon={cost['epsilon']:g}, delta={cost['delta']:g}."
        )
        return run.result

    def _release(
        self, client: Client, dataset: str, query: str, epsilon: float, delta: float, args: Any
    ) -> pd.DataFrame | None:
        if not args.yes and math.isfinite(self.confirm_above):
            estimate = client.smartnoise_sql_cost(dataset, query, epsilon=epsilon, delta=delta)
            free = estimate["replay_of"] is not None and not args.fresh
            cost = estimate["cost"]["epsilon"]
            if not free and cost > self.confirm_above and not self._confirm(dataset, cost):
                print("Not run: nothing spent.")
                return None
        reply = client.smartnoise_sql_response(
            dataset,
            query,
            epsilon=epsilon,
            delta=delta,
            postprocess=not args.no_postprocess,
            fresh=args.fresh,
        )
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


def _queries_left(history: list[dict[str, Any]], budget: dict[str, Any]) -> int | None:
    """How many more queries costing what the last paid one cost still fit."""
    paid = [q for q in history if q["cost"]["epsilon"] > 0 or q["cost"]["delta"] > 0]
    if not paid:
        return None
    cost, remaining = paid[-1]["cost"], budget["remaining"]
    fits = [math.floor(remaining[k] / cost[k] + 1e-9) for k in ("epsilon", "delta") if cost[k] > 0]
    return max(0, min(fits))
