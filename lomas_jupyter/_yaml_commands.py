"""``%%lomas_synth`` and ``%%lomas_diffprivlib``: a line naming the dataset, and a YAML cell
naming everything the request holds.

Their cells are documents, not queries: every field is one of the client's keyword
arguments (``Client.synth``, ``Client.diffprivlib``), so a cell and a call read alike. A
field the request has no place for is refused here, by name, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from IPython.core.magic_arguments import parse_argstring

from lomas_jupyter._commands import (
    Defaults,
    MagicFunction,
    Mode,
    _mode,
    load_yaml,
    parse_assignment,
    render,
)
from lomas_jupyter._errors import ClientUsageError

SYNTH_FIELDS = ("synthesizer", "columns", "epsilon", "delta", "rows", "bins")
MODEL_FIELDS = ("model", "features", "target", "epsilon", "scaler", "options")


@dataclass(frozen=True)
class DocumentCommand:
    """A cell magic whose cell is the request: ``arguments`` are the client call's keyword
    arguments (its dataset apart), ``fresh`` is the line's."""

    dataset: str
    arguments: dict[str, Any]
    mode: Mode = "run"
    fresh: bool = False
    yes: bool = False
    target: str | None = None

    @classmethod
    def parse_synth(
        cls,
        magic: MagicFunction,
        line: str,
        cell: str,
        defaults: Defaults,
        namespace: Mapping[str, Any],
    ) -> DocumentCommand:
        """``%%lomas_synth [DATASET] [VAR <<]``: synthesizer, columns, epsilon, delta, rows, bins."""
        return cls._parse(
            magic, line, cell, defaults, namespace, "%%lomas_synth", SYNTH_FIELDS, "columns"
        )

    @classmethod
    def parse_model(
        cls,
        magic: MagicFunction,
        line: str,
        cell: str,
        defaults: Defaults,
        namespace: Mapping[str, Any],
    ) -> DocumentCommand:
        """``%%lomas_diffprivlib [DATASET] [VAR <<]``: model, features, target, epsilon,
        scaler, options."""
        command = cls._parse(
            magic, line, cell, defaults, namespace, "%%lomas_diffprivlib", MODEL_FIELDS, "features"
        )
        options = command.arguments.get("options")
        if options is not None and not isinstance(options, dict):
            raise ClientUsageError("'options' holds the model's options, e.g. {C: 1.0}")
        return command

    @classmethod
    def _parse(
        cls,
        magic: MagicFunction,
        line: str,
        cell: str,
        defaults: Defaults,
        namespace: Mapping[str, Any],
        name: str,
        fields: tuple[str, ...],
        columns: str,
    ) -> DocumentCommand:
        args = parse_argstring(magic, line)
        dataset, target, cell = _line_words(args.words, args.dataset, cell)
        document = _document(render(cell, namespace), name, fields)
        first = fields[0]
        if first not in document or columns not in document:
            raise ClientUsageError(f"a {name} cell needs at least '{first}' and '{columns}'")
        arguments = {"epsilon": defaults.epsilon, **document}
        if "delta" in fields and "delta" not in document and defaults.delta is not None:
            arguments["delta"] = defaults.delta
        arguments[columns] = _names(document[columns], columns)
        for number in ("epsilon", "delta"):
            if number in arguments:
                arguments[number] = _number(arguments[number], number)
        return cls(defaults.resolve(dataset), arguments, _mode(args), args.fresh, args.yes, target)


def _line_words(
    words: list[str], option: str | None, cell: str
) -> tuple[str | None, str | None, str]:
    """The dataset and the variable of ``[DATASET] [VAR <<]`` (or of ``VAR <<`` starting the
    cell), and the cell without it."""
    assign: list[str] = []
    if words and words[-1].endswith("<<"):
        assign = words[-2:] if words[-1] == "<<" else words[-1:]
        words = words[: -len(assign)]
    if len(words) > 1:
        raise ClientUsageError(
            f"unexpected {' '.join(words)!r} on the magic line: name one dataset, then "
            "'VAR <<' to store the result"
        )
    if words and option and words[0] != option:
        raise ClientUsageError(f"two datasets named: {words[0]} and --dataset {option}")
    target, cell = parse_assignment(assign, cell)
    return (words[0] if words else option), target, cell


def _document(text: str, name: str, fields: tuple[str, ...]) -> dict[str, Any]:
    document = load_yaml(text)
    if not isinstance(document, dict):
        raise ClientUsageError(f"a {name} cell holds fields: {', '.join(fields)}")
    for key in document:
        if key not in fields:
            raise ClientUsageError(
                f"{name} has no field {key!r}; its cell holds: {', '.join(fields)}"
            )
    return document


def _names(value: Any, field: str) -> list[str]:
    """A list of column names; one name, or names separated by commas, are read as one."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ClientUsageError(f"'{field}' is a list of column names, e.g. [species, island]")
    return value


def _number(value: Any, field: str) -> Any:
    """YAML reads ``1e-6`` (no dot) as text: a number written so is taken as one."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ClientUsageError(f"'{field}' must be a number, not {value!r}") from None
    return value
