"""IPython magics for DP queries: ``%load_ext lomas_jupyter``.

The magics wire IPython to the commands: argument parsing in IPython's ``magic_arguments``
style (the help text), defaults configurable with ``%config LomasMagic.<trait>``, results
displayed, and errors as one readable line instead of a traceback. What a magic means is in
``_commands`` (parsing, ``VAR <<``, ``{{name}}`` templating) and ``_executor`` (running).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar, cast

import pandas as pd
from IPython.core.error import StdinNotImplementedError, UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Configurable

from lomas_jupyter._client import Client
from lomas_jupyter._commands import (
    ConnectCommand,
    DatasetCommand,
    Defaults,
    OpenDPCommand,
    RequestBudgetCommand,
    SqlCommand,
)
from lomas_jupyter._errors import ClientUsageError, LomasError
from lomas_jupyter._executor import Executor, Outcome
from lomas_jupyter._results import BudgetRequest, requests_frame
from lomas_jupyter._yaml_commands import DocumentCommand

F = TypeVar("F", bound=Callable[..., Any])


def _friendly_errors(method: F) -> F:
    """Turn any lomas error into one line (UsageError) unless short_errors is off."""

    @functools.wraps(method)
    def wrapper(self: LomasMagic, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except LomasError as err:
            if not self.short_errors:
                raise
            raise UsageError(str(err)) from None

    return cast(F, wrapper)


def _run_options(method: F) -> F:
    """The options every query magic shares: how to run it, and whether to ask first."""
    options = [
        argument(
            "--estimate", action="store_true", help="show the cost and accuracy; spend nothing"
        ),
        argument("--dummy", action="store_true", help="run here on dummy data; spend nothing"),
        argument(
            "--fresh",
            action="store_true",
            help="pay for a new release even if this exact query ran before",
        ),
        argument("--yes", "-y", action="store_true", help="do not ask before an expensive query"),
    ]
    for option in reversed(options):  # as if written one above the other
        method = option(method)
    return method


@magics_class
class LomasMagic(Magics, Configurable):
    """Differentially private queries from notebooks (lomas-jupyter)."""

    dataset = Unicode("", help="Dataset used when a magic names none.").tag(config=True)
    epsilon = Float(0.5, help="Epsilon of %%lomas_sql when --epsilon is not given.").tag(
        config=True
    )
    delta = Float(
        None,
        allow_none=True,
        help="Delta when --delta is not given; None lets the server choose one where groups "
        "are shown above a threshold (and none elsewhere).",
    ).tag(config=True)
    uncertainty = Bool(
        True,
        help="Show a '± column' (95% half-width) after each released column whose accuracy is "
        "known; df.attrs['half_width'] has them either way.",
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
        else, in a JupyterHub server, your Hub token (the service at LOMAS_URL, or the Hub's
        services/lomas/), else lomas-demo/connection.json in this folder or one above it.
        """
        command = ConnectCommand.parse(self.lomas_connect, line)
        try:
            client, dataset, message = command.connect(self.dataset, timeout=self.timeout)
        except LomasError:
            # A mistyped token or URL must not cost the analyst a working connection.
            if self.client is not None:
                print(f"Still connected to {self.client.url}, as before.")
            raise
        if self.client is not None:
            self.client.close()
        self.client, self.dataset = client, dataset
        print(message)

    # -- wiring --------------------------------------------------------------------------------
    def _client(self) -> Client:
        if self.client is None:
            raise ClientUsageError("not connected yet: run %lomas_connect first")
        return self.client

    def _defaults(self) -> Defaults:
        return Defaults(
            dataset=self.dataset,
            epsilon=self.epsilon,
            delta=self.delta,
            uncertainty=self.uncertainty,
            confirm_above=self.confirm_above,
            dummy_rows=self.dummy_rows,
            timeout=self.timeout,
        )

    def _executor(self) -> Executor:
        return Executor(self._client(), self._defaults(), ask=_ask)

    def _namespace(self) -> dict[str, Any]:
        """The notebook's variables (magics always run inside a shell)."""
        assert self.shell is not None
        namespace: dict[str, Any] = self.shell.user_ns
        return namespace

    def _show(self, outcome: Outcome) -> Any:
        if outcome.display is not None:
            shown = outcome.display
            if self.client is not None:
                shown = replace(shown, server=self.client.url, account=self.client.account)
            display(shown)
        if outcome.message:
            print(outcome.message)
        if outcome.value is None or not outcome.target:
            return outcome.value
        self._namespace()[outcome.target] = outcome.value
        return None

    # -- exploring ---------------------------------------------------------------------------
    @line_magic
    @_friendly_errors
    def lomas_datasets(self, line: str) -> pd.DataFrame | None:
        """The datasets you may query, with what is left of your budget on each."""
        return self._show(self._executor().datasets())

    @magic_arguments()
    @argument("dataset", nargs="?")
    @line_magic
    @_friendly_errors
    def lomas_metadata(self, line: str) -> pd.DataFrame | None:
        """Columns, types, bounds and categories of a dataset (public metadata)."""
        command = DatasetCommand.parse(self.lomas_metadata, line, self._defaults())
        return self._show(self._executor().metadata(command))

    @magic_arguments()
    @argument("dataset", nargs="?")
    @line_magic
    @_friendly_errors
    def lomas_budget(self, line: str) -> None:
        """Your budget on a dataset, and how many more queries like your last one fit."""
        command = DatasetCommand.parse(self.lomas_budget, line, self._defaults())
        self._show(self._executor().budget(command))

    @magic_arguments()
    @argument("dataset", nargs="?", help="only queries on this dataset")
    @line_magic
    @_friendly_errors
    def lomas_history(self, line: str) -> pd.DataFrame | None:
        """Your archived queries: what, when, at what cost, with what outcome."""
        command = DatasetCommand.parse(self.lomas_history, line, self._defaults(), required=False)
        return self._show(self._executor().history(command))

    @magic_arguments()
    @argument("dataset", nargs="?")
    @argument("--rows", type=int, default=100, help="how many rows (default 100)")
    @argument("--seed", type=int, default=None, help="random seed, for the same rows again")
    @line_magic
    @_friendly_errors
    def lomas_dummy(self, line: str) -> pd.DataFrame | None:
        """Synthetic rows with the dataset's schema, made from metadata only: free."""
        command = DatasetCommand.parse(self.lomas_dummy, line, self._defaults(), required=False)
        return self._show(self._executor().dummy(command))

    # -- budget requests ---------------------------------------------------------------------
    @magic_arguments()
    @argument("dataset", nargs="?", help="the dataset (default: LomasMagic.dataset)")
    @argument("--epsilon", "-e", type=float, required=True, help="how much more epsilon")
    @argument("--delta", type=float, help="how much more delta (default 0)")
    @argument("--reason", nargs="+", required=True, help="why you need it, for the admins")
    @line_magic
    @_friendly_errors
    def lomas_request_budget(self, line: str) -> None:
        """Ask the service's admins for more budget on a dataset.

        An admin approves it (perhaps for another amount) or denies it with a note; see where
        it stands with %lomas_budget_requests. One request per dataset may wait at a time.
        """
        command = RequestBudgetCommand.parse(self.lomas_request_budget, line, self._defaults())
        request = self._client().request_budget(
            command.dataset, command.epsilon, delta=command.delta, reason=command.reason
        )
        print(request_line(request))

    @line_magic
    @_friendly_errors
    def lomas_budget_requests(self, line: str) -> pd.DataFrame | None:
        """Your budget requests, oldest first: what you asked, their state, the admin's note."""
        requests = self._client().budget_requests()
        if not requests:
            print(
                'No budget requests yet: %lomas_request_budget DATASET --epsilon E --reason "..."'
            )
            return None
        # The analyst's own table: their name on every row says nothing, a short id is enough.
        frame = requests_frame(requests).drop(columns=["user"])
        frame["id"] = frame["id"].str[:8]
        return frame

    # -- querying ----------------------------------------------------------------------------
    @magic_arguments()
    @argument("--dataset", "-d", help="dataset to query (default: LomasMagic.dataset)")
    @argument(
        "--epsilon", "-e", type=float, help="epsilon per noisy value (default: LomasMagic.epsilon)"
    )
    @argument("--delta", type=float, help="delta (default: LomasMagic.delta)")
    @_run_options
    @argument(
        "--budget",
        type=float,
        help="the whole cell's epsilon: split evenly over the query's noisy values",
    )
    @argument("--no-postprocess", action="store_true", help="return the raw noisy aggregates")
    @argument("assign", nargs="*", help="VAR << stores the result in VAR")
    @cell_magic
    @_friendly_errors
    def lomas_sql(self, line: str, cell: str) -> pd.DataFrame | None:
        """Run the cell's SELECT with differential privacy and show the noisy result.

        The cell may start with 'VAR <<' and may use {{name}} to insert Python variables.
        """
        command = SqlCommand.parse(self.lomas_sql, line, cell, self._defaults(), self._namespace())
        return self._show(self._executor().sql(command))

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
    @argument(
        "--no-postprocess",
        action="store_true",
        help="return the raw noisy statistics, not kept in their public range",
    )
    @_run_options
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
        command = OpenDPCommand.parse(
            self.lomas_opendp, line, cell, self._defaults(), self._namespace()
        )
        return self._show(self._executor().opendp(command))

    @magic_arguments()
    @argument("words", nargs="*", metavar="[DATASET] [VAR <<]")
    @argument("--dataset", "-d", help="the dataset (default: LomasMagic.dataset)")
    @_run_options
    @cell_magic
    @_friendly_errors
    def lomas_synth(self, line: str, cell: str) -> pd.DataFrame | None:
        """Synthetic rows from a synthesizer the server fits with DP (SmartNoise-Synth).

        The cell (YAML or JSON) holds 'synthesizer' (mst or aim) and 'columns', and may hold
        'epsilon' (default: LomasMagic.epsilon), 'delta', 'rows' (1000) and 'bins' (10), e.g.

            synthesizer: mst
            columns: [species, island, bill_length_mm]
            epsilon: 1.0
        """
        command = DocumentCommand.parse_synth(
            self.lomas_synth, line, cell, self._defaults(), self._namespace()
        )
        return self._show(self._executor().synth(command))

    @magic_arguments()
    @argument("words", nargs="*", metavar="[DATASET] [VAR <<]")
    @argument("--dataset", "-d", help="the dataset (default: LomasMagic.dataset)")
    @_run_options
    @cell_magic
    @_friendly_errors
    def lomas_diffprivlib(self, line: str, cell: str) -> Any:
        """A model fitted with DP on the server (DiffPrivLib), as a scikit-learn estimator.

        The cell (YAML or JSON) holds 'model' (logistic_regression or pca; the server
        withdrew linear_regression, gaussian_nb and k_means and refuses them with the reason)
        and 'features', and may hold 'target', 'epsilon' (default: LomasMagic.epsilon),
        'scaler' (true: standardize the features first) and 'options' (C, fit_intercept,
        max_iter, n_components), e.g.

            model: logistic_regression
            features: [bill_length_mm, flipper_length_mm]
            target: species
            epsilon: 2.0
            scaler: true
        """
        command = DocumentCommand.parse_model(
            self.lomas_diffprivlib, line, cell, self._defaults(), self._namespace()
        )
        return self._show(self._executor().diffprivlib(command))


def request_line(request: BudgetRequest) -> str:
    """One line: what was asked on which dataset, and where the request stands."""
    line = f"Budget request {request.id[:8]}: {_pair(request.requested)} on {request.dataset}"
    line += f", {request.state}"
    if request.granted is not None:
        line += f" ({_pair(request.granted)} granted)"
    if request.decided_by:
        line += f" by {request.decided_by}"
    if request.note:
        line += f": {request.note}"
    if request.state == "pending":
        line += ". An admin of the service decides; %lomas_budget_requests shows it then."
    return line


def _pair(amount: dict[str, float]) -> str:
    delta = amount.get("delta", 0.0)
    return f"epsilon={amount['epsilon']:g}" + (f", delta={delta:g}" if delta else "")


def _ask(prompt: str) -> str | None:
    """The analyst's answer, or None where the kernel cannot ask (no stdin)."""
    try:
        return input(prompt)
    except (StdinNotImplementedError, EOFError, OSError):
        return None
