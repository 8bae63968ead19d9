"""What a magic asks for: its line and cell parsed into a typed command.

As in JupySQL, parsing lives in command objects and the magic only wires IPython to them: a
command holds the parsed options, the rendered cell and the dataset it resolved to, and
``_executor.Executor`` carries it out. The argument parser of each magic is the one its
``@magic_arguments`` decorators built, so the help text stays beside the magic.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jinja2
import yaml
from IPython.core.magic_arguments import parse_argstring

from lomas_jupyter._client import Client
from lomas_jupyter._errors import ClientUsageError, NotFound, TransportError

Mode = Literal["run", "estimate", "dummy"]
MagicFunction = Callable[..., Any]  # a magic decorated with @magic_arguments
_ASSIGN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*<<\s*")


@dataclass(frozen=True)
class Defaults:
    """The magic's settings when a command is parsed (``%config LomasMagic.<trait>``)."""

    dataset: str = ""
    epsilon: float = 0.5
    delta: float | None = None  # None: the server chooses (only where a query needs one)
    uncertainty: bool = True
    confirm_above: float = 1.0
    dummy_rows: int = 1000
    timeout: float = 120.0

    def resolve(self, name: str | None) -> str:
        chosen = name or self.dataset
        if not chosen:
            raise ClientUsageError(
                "which dataset? name it, or set %config LomasMagic.dataset = 'NAME'"
            )
        return chosen


@dataclass(frozen=True)
class ConnectCommand:
    """``%lomas_connect [URL] [--token T] [--file F] [--dataset D]``."""

    url: str | None
    token: str | None
    file: str | None
    dataset: str | None

    @classmethod
    def parse(cls, magic: MagicFunction, line: str) -> ConnectCommand:
        args = parse_argstring(magic, line)
        return cls(args.url, args.token, args.file, args.dataset)

    def open(self, *, timeout: float) -> Client:
        if self.file:
            return Client.from_file(self.file, timeout=timeout)
        if self.url:
            if self.token:
                return Client(
                    self.url, self.token, timeout=timeout, token_source="the token after --token"
                )
            token = os.environ.get("LOMAS_TOKEN")
            if not token:
                raise ClientUsageError("give --token, or set LOMAS_TOKEN")
            return Client(self.url, token, timeout=timeout, token_source="LOMAS_TOKEN")
        return Client.discover(timeout=timeout)

    def connect(self, current: str, *, timeout: float) -> tuple[Client, str, str]:
        """A client that has answered, the default dataset on it, and the line that says so.

        Nothing is kept of an attempt that fails, so the caller's connection stays as it was."""
        client = self.open(timeout=timeout)
        try:
            dataset, message = self.choose_dataset(client, current)
        except BaseException:
            client.close()
            raise
        return client, dataset, message

    def choose_dataset(self, client: Client, current: str) -> tuple[str, str]:
        """The default dataset after connecting, and the line that says so: the one asked
        for, else the current one if this server has it, else the only one there is."""
        names = [d.name for d in client.datasets()]
        dataset = current if current in names else ""
        if self.dataset:
            if self.dataset not in names:
                raise ClientUsageError(
                    f"no dataset {self.dataset!r} is available to you; you have: {', '.join(names)}"
                )
            dataset = self.dataset
        elif not dataset and len(names) == 1:
            dataset = names[0]
        who = connected_as(client)
        message = f"Connected to {client.url}{who}. Datasets: {', '.join(names) or '(none)'}" + (
            f"; default dataset: {dataset}" if dataset else ""
        )
        return dataset, message


def connected_as(client: Client) -> str:
    """The ' as alice (admin)' of the line that says who is connected: the server's own word
    (``GET /me``, which also sets ``client.user``), else (a server without /me) the name the
    connection settings gave."""
    try:
        me = client.me()
    except (NotFound, TransportError) as err:
        # A server older than /me answers 404; anything else (no reply at all) is a failure.
        if err.status != 404:
            raise
        return f" as {client.user}" if client.user else ""
    client.user = me.user
    roles = ["admin"] if me.admin else []
    if me.identity == "hub":
        roles.append("through JupyterHub")
    return f" as {me.user}" + (f" ({', '.join(roles)})" if roles else "")


@dataclass(frozen=True)
class RequestBudgetCommand:
    """``%lomas_request_budget [DATASET] --epsilon E [--delta D] --reason TEXT``."""

    dataset: str
    epsilon: float
    delta: float | None
    reason: str

    @classmethod
    def parse(cls, magic: MagicFunction, line: str, defaults: Defaults) -> RequestBudgetCommand:
        args = parse_argstring(magic, line)
        # --reason takes the words up to the next option, so quotes are optional; IPython's
        # splitting keeps a quoted argument's quotes.
        reason = " ".join(_unquoted(word) for word in args.reason or ()).strip()
        if not reason:
            raise ClientUsageError('say why with --reason "...": the admins decide on it')
        return cls(defaults.resolve(args.dataset), args.epsilon, args.delta, reason)


@dataclass(frozen=True)
class DatasetCommand:
    """A line magic about one dataset: ``%lomas_metadata``, ``%lomas_budget``, ``%lomas_dummy``
    (with ``--rows`` and ``--seed``) and ``%lomas_history`` (whose dataset is optional)."""

    dataset: str | None
    rows: int = 100
    seed: int | None = None

    @classmethod
    def parse(
        cls, magic: MagicFunction, line: str, defaults: Defaults, *, required: bool = True
    ) -> DatasetCommand:
        args = parse_argstring(magic, line)
        dataset = defaults.resolve(args.dataset) if required else args.dataset or defaults.dataset
        return cls(dataset or None, getattr(args, "rows", 100), getattr(args, "seed", None))


@dataclass(frozen=True)
class SqlCommand:
    """``%%lomas_sql``: a SELECT for SmartNoise-SQL, with its privacy parameters."""

    dataset: str
    query: str
    epsilon: float
    delta: float | None
    mode: Mode = "run"
    fresh: bool = False
    yes: bool = False
    postprocess: bool = True
    target: str | None = None  # VAR of 'VAR <<'
    budget: float | None = None  # the cell's whole epsilon, split over its noisy values

    @classmethod
    def parse(
        cls,
        magic: MagicFunction,
        line: str,
        cell: str,
        defaults: Defaults,
        namespace: Mapping[str, Any],
    ) -> SqlCommand:
        args = parse_argstring(magic, line)
        if args.budget is not None and args.epsilon is not None:
            raise ClientUsageError(
                "give --epsilon (for each noisy value) or --budget (for the whole cell), not both"
            )
        target, cell = parse_assignment(args.assign, cell)
        query = render(cell, namespace)
        return cls(
            dataset=defaults.resolve(args.dataset),
            query=query,
            epsilon=defaults.epsilon if args.epsilon is None else args.epsilon,
            delta=defaults.delta if args.delta is None else args.delta,
            mode=_mode(args),
            fresh=args.fresh,
            yes=args.yes,
            postprocess=not args.no_postprocess,
            target=target,
            budget=args.budget,
        )


@dataclass(frozen=True)
class OpenDPCommand:
    """``%%lomas_opendp``: an OpenDP query described in YAML, and the noise to add."""

    dataset: str
    request: dict[str, Any]  # the body of /opendp: "query" and the noise
    mode: Mode = "run"
    fresh: bool = False
    yes: bool = False
    target: str | None = None

    @classmethod
    def parse(
        cls,
        magic: MagicFunction,
        line: str,
        cell: str,
        defaults: Defaults,
        namespace: Mapping[str, Any],
    ) -> OpenDPCommand:
        args = parse_argstring(magic, line)
        target, cell = parse_assignment(args.assign, cell)
        query = parse_query_document(render(cell, namespace))
        dataset = defaults.resolve(args.dataset)
        request = {"query": query, **opendp_noise(args, defaults)}
        if args.no_postprocess:
            request["postprocess"] = False
        return cls(dataset, request, _mode(args), args.fresh, args.yes, target)


def _unquoted(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"":
        return word[1:-1]
    return word


def _mode(args: Any) -> Mode:
    if args.estimate:
        return "estimate"
    return "dummy" if args.dummy else "run"


def opendp_noise(args: Any, defaults: Defaults) -> dict[str, Any]:
    """The noise of ``%%lomas_opendp`` from --epsilon, --rho, --accuracy and --delta."""
    if args.rho is not None and args.epsilon is not None:
        raise ClientUsageError("give --epsilon (Laplace) or --rho (Gaussian), not both")
    gaussian = args.rho is not None
    noise: dict[str, Any] = {"mechanism": "gaussian" if gaussian else "laplace"}
    if args.accuracy is not None:
        noise["accuracy"] = {"half_width": args.accuracy, "confidence": 0.95}
    elif gaussian:
        noise["rho"] = args.rho
    else:
        noise["epsilon"] = defaults.epsilon if args.epsilon is None else args.epsilon
    delta = defaults.delta if args.delta is None else args.delta
    if delta is not None:  # None: the server chooses where the query needs one
        noise["delta"] = delta
    return noise


def render(cell: str, namespace: Mapping[str, Any]) -> str:
    """Fill ``{{name}}`` from the notebook's variables (Jinja2, as in JupySQL)."""
    if "{{" not in cell and "{%" not in cell:
        return cell
    try:
        template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(cell)
        return template.render(**namespace)
    except jinja2.UndefinedError as err:
        raise ClientUsageError(f"template: {err.message}") from None
    except jinja2.TemplateError as err:
        raise ClientUsageError(f"template: {err}") from None


def parse_query_document(text: str) -> dict[str, Any]:
    """The cell of %%lomas_opendp: YAML (of which JSON is a part)."""
    document = load_yaml(text)
    if not isinstance(document, dict):
        raise ClientUsageError(
            "the cell describes the query: 'aggregates', and optionally 'filters' and 'group_by'"
        )
    return document


def load_yaml(text: str) -> Any:
    """A cell's YAML (of which JSON is a part); a mistake is one line saying where it is."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = " ".join(str(err.problem or err.context or "").split())
        raise ClientUsageError(f"the cell is not valid YAML or JSON: {problem}{where}") from None
    except yaml.YAMLError as err:
        problem = " ".join(str(err).split())
        raise ClientUsageError(f"the cell is not valid YAML or JSON: {problem}") from None


def parse_assignment(tokens: list[str], cell: str) -> tuple[str | None, str]:
    """Find 'VAR <<' on the magic line or at the start of the cell."""
    if tokens:
        if len(tokens) == 2 and tokens[1] == "<<" and tokens[0].isidentifier():
            return tokens[0], cell
        if len(tokens) == 1 and tokens[0].endswith("<<") and tokens[0][:-2].isidentifier():
            return tokens[0][:-2], cell
        raise ClientUsageError(
            f"unexpected {' '.join(tokens)!r} on the magic line; to store the result write 'VAR <<'"
        )
    match = _ASSIGN.match(cell)
    if match:
        return match.group(1), cell[match.end() :]
    return None, cell
