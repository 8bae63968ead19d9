"""Carry out the magics' commands against a ``Client``; say what to show, show nothing.

An ``Outcome`` holds what the magic displays (a budget bundle, a printed line) and the
DataFrame (or a DP model's estimator) it returns or stores. Asking before an expensive query
goes through ``ask``, which returns None where nobody can answer (a notebook run unattended).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from lomas_jupyter._archive import history_frame
from lomas_jupyter._client import Client
from lomas_jupyter._commands import DatasetCommand, Defaults, OpenDPCommand, SqlCommand
from lomas_jupyter._display import BudgetDisplay
from lomas_jupyter._errors import ClientUsageError
from lomas_jupyter._model_release import ModelRelease, budget_split_table, model_body
from lomas_jupyter._models import estimator, summary
from lomas_jupyter._results import DATASET_COLUMNS, Estimate, Release
from lomas_jupyter._synth import domain_table, synth_notes
from lomas_jupyter._uncertainty import estimate_notes
from lomas_jupyter._yaml_commands import DocumentCommand


@dataclass(frozen=True)
class Outcome:
    frame: pd.DataFrame | None = None
    display: BudgetDisplay | None = None
    message: str | None = None  # a line to print
    target: str | None = None  # store the frame in this variable instead of returning it
    model: Any = None  # a fitted estimator, returned or stored in place of a frame

    @property
    def value(self) -> Any:
        return self.frame if self.model is None else self.model


class Executor:
    """Runs commands for one client, with the magic's settings of the moment."""

    def __init__(
        self, client: Client, defaults: Defaults, ask: Callable[[str], str | None]
    ) -> None:
        self.client = client
        self.defaults = defaults
        self.ask = ask

    # -- exploring ---------------------------------------------------------------------------
    def datasets(self) -> Outcome:
        rows = [d.row() for d in self.client.datasets()]
        return Outcome(pd.DataFrame(rows, columns=list(DATASET_COLUMNS)))

    def metadata(self, command: DatasetCommand) -> Outcome:
        dataset = self.defaults.resolve(command.dataset)
        metadata = self.client.metadata(dataset)
        options = ", ".join(f"{k}={v}" for k, v in metadata.options.items())
        return Outcome(metadata.columns, message=f"{dataset}: {options}")

    def budget(self, command: DatasetCommand) -> Outcome:
        dataset = self.defaults.resolve(command.dataset)
        budget = self.client.budget(dataset)
        # Counted by the server in its own ledger units (rho on zCDP datasets).
        return Outcome(
            display=BudgetDisplay(dataset, budget.amounts, queries_left=budget.queries_left)
        )

    def history(self, command: DatasetCommand) -> Outcome:
        return Outcome(history_frame(self.client.queries(command.dataset)))

    def dummy(self, command: DatasetCommand) -> Outcome:
        return Outcome(
            self.client.dummy(
                self.defaults.resolve(command.dataset), rows=command.rows, seed=command.seed
            )
        )

    # -- querying ----------------------------------------------------------------------------
    def sql(self, command: SqlCommand) -> Outcome:
        client, dataset = self.client, command.dataset

        def price(asked: SqlCommand) -> Estimate:
            return client.smartnoise_sql_cost(
                dataset,
                asked.query,
                epsilon=asked.epsilon,
                delta=asked.delta,
                postprocess=asked.postprocess,
            )

        split = None
        if command.budget is not None:
            command, split = _split_budget(command, price)

        def estimate() -> Estimate:
            return price(command)

        if command.mode == "estimate":
            return _estimate_outcome(estimate(), split)
        if command.mode == "dummy":
            from lomas_jupyter._dummy import run_on_dummy

            rows = client.dummy(dataset, rows=self.defaults.dummy_rows, seed=0)
            run = run_on_dummy(
                client.metadata(dataset).raw,
                rows,
                dataset,
                command.query,
                epsilon=command.epsilon,
                delta=command.delta,
                seed=0,
            )
            done = f"Dummy run on {run.rows} synthetic rows"
            return _dummy_outcome(done, estimate(), command.target, frame=run.result)
        return self._spend(
            estimate,
            lambda: client.smartnoise_sql_response(
                dataset,
                command.query,
                epsilon=command.epsilon,
                delta=command.delta,
                postprocess=command.postprocess,
                fresh=command.fresh,
            ),
            command.fresh,
            command.yes,
            command.target,
            split,
        )

    def opendp(self, command: OpenDPCommand) -> Outcome:
        client, dataset, request = self.client, command.dataset, command.request

        def estimate() -> Estimate:
            return client.opendp_cost(dataset, request)

        if command.mode == "estimate":
            return _estimate_outcome(estimate())
        if command.mode == "dummy":
            from lomas_jupyter._dummy import run_opendp_on_dummy

            rows = client.dummy(dataset, rows=self.defaults.dummy_rows, seed=0)
            result = run_opendp_on_dummy(client.metadata(dataset).raw, rows, dataset, request)
            done = f"Dummy run on {len(rows)} synthetic rows"
            return _dummy_outcome(done, estimate(), command.target, frame=result)
        return self._spend(
            estimate,
            lambda: client.opendp_response(dataset, {**request, "fresh": command.fresh}),
            command.fresh,
            command.yes,
            command.target,
        )

    def synth(self, command: DocumentCommand) -> Outcome:
        client, dataset, arguments = self.client, command.dataset, command.arguments

        def estimate() -> Estimate:
            return client.synth_cost(dataset, **arguments)

        if command.mode == "estimate":
            known = estimate()
            return _estimate_outcome(known, table=domain_table(known), notes=synth_notes(known))
        if command.mode == "dummy":
            known = estimate()  # the server's checks of the request, and its price
            columns = [column["column"] for column in known.raw["domain"]]
            rows = client.dummy(dataset, rows=arguments.get("rows", 1000), seed=0)[columns]
            done = f"{len(rows)} dummy rows, made from the metadata alone (nothing was fitted)"
            return _dummy_outcome(done, known, command.target, frame=rows, what="these rows")
        return self._spend(
            estimate,
            lambda: client.synth_response(dataset, **arguments, fresh=command.fresh),
            command.fresh,
            command.yes,
            command.target,
        )

    def diffprivlib(self, command: DocumentCommand) -> Outcome:
        client, dataset, arguments = self.client, command.dataset, command.arguments

        def estimate() -> Estimate:
            return client.diffprivlib_cost(dataset, **arguments)

        if command.mode == "estimate":
            known = estimate()
            return _estimate_outcome(known, table=budget_split_table(known))
        if command.mode == "dummy":
            from lomas_jupyter._dummy import fit_model_on_dummy

            rows = client.dummy(dataset, rows=self.defaults.dummy_rows, seed=0)
            body = model_body(**arguments)
            fitted = fit_model_on_dummy(client.metadata(dataset).raw, rows, body)
            done = f"{summary(fitted)}\nFitted here on {len(rows)} dummy rows"
            model = estimator(fitted)
            return _dummy_outcome(done, estimate(), command.target, model=model, what="this model")
        if not self._go_ahead(estimate, command.fresh, command.yes):
            return Outcome(message="Not run: nothing spent.")
        release = client.diffprivlib_response(dataset, **arguments, fresh=command.fresh)
        return Outcome(
            model=release.model,
            display=_release_display(release),
            message=release.summary(),
            target=command.target,
        )

    def _spend(
        self,
        estimate: Callable[[], Estimate],
        run: Callable[[], Release],
        fresh: bool,
        yes: bool,
        target: str | None,
        split: str | None = None,
    ) -> Outcome:
        """Ask first when the query is expensive (and not a free replay), then run it."""
        if not self._go_ahead(estimate, fresh, yes):
            return Outcome(message="Not run: nothing spent.")
        release = run()
        frame = release.with_uncertainty() if self.defaults.uncertainty else release.frame
        notes = release.frame.attrs.get("notes", [])  # worked out once, with the release
        message = _lines(split, *notes)
        return Outcome(frame, display=_release_display(release), message=message, target=target)

    def _go_ahead(self, estimate: Callable[[], Estimate], fresh: bool, yes: bool) -> bool:
        """Whether to run: yes, unless it costs more than ``confirm_above`` (and is no free
        replay) and the analyst, asked, says no."""
        threshold = self.defaults.confirm_above
        if not yes and math.isfinite(threshold):
            known = estimate()
            free = known.free and not fresh
            cost = known.cost["epsilon"]
            if not free and cost > threshold and not self._confirm(known.dataset, cost):
                return False
        return True

    def _confirm(self, dataset: str, cost: float) -> bool:
        threshold = self.defaults.confirm_above
        answer = self.ask(
            f"This query costs epsilon={cost:g} on {dataset}, above "
            f"LomasMagic.confirm_above={threshold:g}. Run it? [y/N] "
        )
        if answer is None:
            raise ClientUsageError(
                f"this query costs epsilon={cost:g}, above LomasMagic.confirm_above="
                f"{threshold:g}, and there is no way to ask here: add --yes to run it"
            )
        return answer.strip().lower() in ("y", "yes")


def _split_budget(
    command: SqlCommand, price: Callable[[SqlCommand], Estimate]
) -> tuple[SqlCommand, str]:
    """``--budget B``: the epsilon for each noisy value that makes the cell cost B.

    SmartNoise-SQL charges each noisy value its epsilon (an AVG is a noisy SUM and a noisy
    COUNT). The server prices the query at one epsilon, which says how many noisy values it
    has; the same price at B / count is then checked, and scaled down once if the dataset's
    accounting adds up otherwise."""
    assert command.budget is not None
    budget = command.budget
    # How many noisy values there are does not depend on epsilon: priced at a twentieth of
    # the budget, the probe stays under the per-query maximum a query with fewer than 20
    # noisy values could meet.
    probe = replace(command, epsilon=max(budget / 20, 1e-3), budget=None)
    count = max(1, len(price(probe).accuracy.get("noisy_values", [])))
    chosen = replace(probe, epsilon=budget / count)
    cost = price(chosen).cost["epsilon"]
    if cost > budget:
        chosen = replace(chosen, epsilon=chosen.epsilon * budget / cost)
    line = (
        f"--budget {budget:g}: epsilon={chosen.epsilon:.4g} for each of the query's {count} "
        f"noisy value{'s' if count != 1 else ''}"
    )
    return chosen, line


def _estimate_outcome(
    estimate: Estimate,
    split: str | None = None,
    *,
    table: pd.DataFrame | None = None,
    notes: list[str] | None = None,
) -> Outcome:
    """The price shown: the accuracy of each released column, or what else says what the
    result is worth (a synthesizer's domain, how a model's budget is split)."""
    note = None
    if estimate.replay_of:
        note = f"this exact query ran before (query {estimate.replay_of[:8]}): rerunning it is free"
    elif not estimate.fits:
        note = "this query does not fit your remaining budget"
    display = BudgetDisplay(
        estimate.dataset, estimate.budget.amounts, cost=estimate.cost, kind="estimate", note=note
    )
    lines = _lines(split, *estimate_notes(estimate.accuracy), *(notes or ()))
    shown = estimate.accuracy_table() if table is None else table
    # Shown, not stored: 'VAR <<' keeps the result of a run, and an estimate is none.
    return Outcome(shown, display=display, message=lines)


def _dummy_outcome(
    done: str,
    estimate: Estimate,
    target: str | None,
    *,
    frame: pd.DataFrame | None = None,
    model: Any = None,
    what: str = "this query",
) -> Outcome:
    """``done``: what was made here (nothing spent), then what ``what`` would cost there."""
    cost = estimate.cost
    message = (
        f"{done}: nothing spent. On {estimate.dataset} {what} would cost "
        f"epsilon={cost['epsilon']:g}, delta={cost['delta']:g}."
    )
    return Outcome(frame, message=message, target=target, model=model)


def _release_display(release: Release | ModelRelease) -> BudgetDisplay:
    replay = release.replay_of
    return BudgetDisplay(
        release.dataset,
        release.budget.amounts,
        cost=release.cost,
        kind="replay" if replay else "query",
        query_id=release.query_id,
        queries_left=release.queries_left,
        replay_of=replay,
        note="the same noisy answer as before; add --fresh to pay for a new one"
        if replay
        else None,
    )


def _lines(*lines: str | None) -> str | None:
    return "\n".join(line for line in lines if line) or None
