"""What the data owner's administrator can do: users, tokens, datasets, grants, budgets, archive.

Used by the ``lomas-admin`` command line and the demo set-up. Everything is validated here
(names, metadata, that the data file matches its metadata) so that a dataset that reaches
analysts is known to load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lomas_server.accounting import (
    BASIC,
    DEFAULT_CONVERSION_DELTA,
    AccountingRule,
    PrivacyAmount,
)
from lomas_server.datasets import (
    DatasetSource,
    source_from_description,
    source_from_location,
)
from lomas_server.datasets.conform import check_conforms, check_rows
from lomas_server.datasets.parquet_scan import plan_scan, scannable
from lomas_server.errors import (
    Conflict,
    DatasetUnavailable,
    Forbidden,
    InvalidMetadata,
    InvalidRequest,
    NotFound,
)
from lomas_server.metadata import DatasetMetadata
from lomas_server.service.accounts import Account, rule_of
from lomas_server.service.archive_views import archive_view
from lomas_server.service.stated_budgets import check_rule, stated_amount
from lomas_server.store.base import AdminStore, ArchiveEntry, DatasetRecord, UserRecord
from lomas_server.tokens import hash_token, new_token

# The token hash of users without a lomas token (Hub users): no token hashes to it.
_NO_TOKEN = "none:"
DATASET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


class AdminService:
    def __init__(self, store: AdminStore) -> None:
        self.store = store

    # -- users -------------------------------------------------------------------------------
    def add_user(self, name: str, *, is_admin: bool = False) -> str:
        """Create a user and return their token: the only time it is ever shown."""
        _check_user_name(name)
        token = new_token()
        self.store.add_user(name, hash_token(token), is_admin=is_admin)
        return token

    def add_hub_user(self, name: str, *, is_admin: bool = False) -> None:
        """Create a user who signs in through JupyterHub: no lomas token exists for them."""
        _check_user_name(name)
        self.store.add_user(name, _NO_TOKEN + name, is_admin=is_admin)

    def ensure_hub_user(self, name: str) -> None:
        """Give a Hub user a record on their first call, so that grants, spends and budget
        requests have someone to belong to (they see no dataset until an admin grants one)."""
        if self.store.get_user(name) is not None:
            return
        try:
            self.add_hub_user(name)
        except Conflict:
            pass  # their other first request created it at the same moment
        except InvalidRequest as err:
            raise Forbidden(
                "this service cannot hold your JupyterHub user name (it takes 1-128 printable "
                "characters); ask its admins"
            ) from err

    def rotate_token(self, name: str) -> str:
        token = new_token()
        self.store.set_token_hash(name, hash_token(token))
        return token

    def set_may_query(self, name: str, may_query: bool) -> None:
        self.store.set_may_query(name, may_query)

    def list_users(self) -> list[UserRecord]:
        return self.store.list_users()

    # -- datasets ----------------------------------------------------------------------------
    def add_dataset(
        self,
        name: str,
        location: str | Path,
        metadata: Any,
        *,
        file_format: str | None = None,
        max_query: tuple[float, float] | None = None,
        cap: tuple[float, float] | None = None,
        source_options: dict[str, Any] | None = None,
        check_data: bool = True,
        accounting: str = BASIC,
        conversion_delta: float = DEFAULT_CONVERSION_DELTA,
        engine: str | None = None,
    ) -> DatasetRecord:
        """Register a dataset at a file path, ``s3://bucket/key`` or ``http(s)://`` URL.

        ``accounting`` is "basic" (lomas's sum of epsilons and deltas) or "zcdp"; it cannot
        change later, since the ledger is kept in its currency.
        """
        try:
            AccountingRule(accounting, conversion_delta)
        except ValueError as err:
            raise InvalidRequest(str(err)) from err
        if not DATASET_NAME.match(name):
            raise InvalidRequest(
                "a dataset name is 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
        parsed = DatasetMetadata.from_dict(metadata)
        weakening = parsed.weakening_options()
        if weakening:
            raise InvalidMetadata(
                "the metadata would weaken the privacy guarantee: " + "; ".join(weakening)
            )
        source = source_from_location(
            location, file_format, engine=engine, **(source_options or {})
        )
        if source.in_place:
            # The table stays in its database: its columns must have the metadata's types.
            source.check_columns({name: spec.type for name, spec in parsed.columns.items()})
            if check_data:
                _check_in_place_rows(source, parsed)
        elif check_data and not (scannable(source) and plan_scan(source, parsed, strict=True)):
            # Read it once now: a dataset whose rows do not fit its metadata never reaches
            # analysts. It is read a part at a time and nothing is kept, so a file as large as
            # memory can be checked. (A Parquet file whose types already fit was checked from
            # its footer without loading it.)
            check_conforms(source.stream(list(parsed.columns), strict=True), parsed)
        record = DatasetRecord(
            name=name,
            source=source.describe(),
            metadata=parsed.document,
            max_query=stated_amount(max_query, "per-query maximum") if max_query else None,
            cap=stated_amount(cap, "dataset-wide cap") if cap else None,
            accounting=accounting,
            conversion_delta=conversion_delta,
        )
        if record.cap is not None:
            check_rule(record, record.cap)
        return self.store.add_dataset(record)

    def set_limits(
        self,
        name: str,
        *,
        max_query: tuple[float, float] | None,
        cap: tuple[float, float] | None,
    ) -> None:
        cap_amount = stated_amount(cap, "dataset-wide cap") if cap else None
        record = self.store.get_dataset(name)
        if record is not None and cap_amount is not None:
            check_rule(record, cap_amount)
        self.store.set_dataset_limits(
            name,
            max_query=stated_amount(max_query, "per-query maximum") if max_query else None,
            cap=cap_amount,
        )

    def list_datasets(self) -> list[DatasetRecord]:
        return self.store.list_datasets()

    @staticmethod
    def public_source(record: DatasetRecord) -> dict[str, Any]:
        """Where a dataset lives, with credentials masked: for display."""
        return source_from_description(record.source).public_description()

    # -- budgets -----------------------------------------------------------------------------
    def grant(self, user: str, dataset: str, epsilon: float, delta: float) -> None:
        amount = stated_amount((epsilon, delta), "budget")
        record = self.store.get_dataset(dataset)
        if record is not None:
            check_rule(record, amount)
        self.store.set_grant(user, dataset, amount)

    def budgets(self, user: str) -> list[dict[str, Any]]:
        if self.store.get_user(user) is None:
            raise NotFound(f"no user {user!r}")
        out = []
        for grant in self.store.grants_for_user(user):
            record = self.store.get_dataset(grant.dataset)
            if record is not None:
                account = Account(record, grant.initial, self.store.spent(user, grant.dataset))
                out.append({"dataset": grant.dataset, **account.view()})
        return out

    def dataset_spent(self, dataset: str) -> PrivacyAmount:
        """What all users together have spent, as (epsilon, delta)."""
        record = self.store.get_dataset(dataset)
        if record is None:
            raise NotFound(f"no dataset {dataset!r}")
        return rule_of(record).as_approx_dp(self.store.dataset_spent(dataset))

    def archive(self, user: str, dataset: str | None = None) -> list[ArchiveEntry]:
        if self.store.get_user(user) is None:
            raise NotFound(f"no user {user!r}")
        return self.store.archive(user, dataset=dataset)

    # -- views: what the admin API and ``lomas-admin --json`` show ------------------------------
    def user_view(self, name: str) -> dict[str, Any]:
        record = self.store.get_user(name)
        if record is None:
            raise NotFound(f"no user {name!r}")
        return _user_view(record)

    def user_views(self) -> list[dict[str, Any]]:
        return [_user_view(record) for record in self.store.list_users()]

    def dataset_view(self, name: str) -> dict[str, Any]:
        record = self.store.get_dataset(name)
        if record is None:
            raise NotFound(f"no dataset {name!r}")
        return self._dataset_view(record)

    def dataset_views(self) -> list[dict[str, Any]]:
        return [self._dataset_view(record) for record in self.store.list_datasets()]

    def archive_views(self, user: str, dataset: str | None = None) -> list[dict[str, Any]]:
        """A user's archive, worded as the user's own ``/queries`` words it."""
        entries = self.archive(user, dataset)
        rules = {}
        for name in {entry.dataset for entry in entries}:
            record = self.store.get_dataset(name)
            rules[name] = rule_of(record) if record is not None else AccountingRule()
        return [archive_view(entry, rules[entry.dataset]) for entry in entries]

    def _dataset_view(self, record: DatasetRecord) -> dict[str, Any]:
        return {
            "name": record.name,
            "source": self.public_source(record),
            "accounting": rule_of(record).describe(),
            "max_query": record.max_query.as_dict() if record.max_query else None,
            "cap": record.cap.as_dict() if record.cap else None,
            "spent": self.dataset_spent(record.name).as_dict(),
            "columns": list(record.metadata.get("columns", {})),
            "created_at": record.created_at,
        }


def _user_view(record: UserRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "admin": record.is_admin,
        "may_query": record.may_query,
        "created_at": record.created_at,
    }


def _check_in_place_rows(source: DatasetSource, metadata: DatasetMetadata) -> None:
    """What ``conformed_table(strict=True)`` checks of a file, asked of the database or Spark:
    no more rows than ``rows``, and none without a required value."""
    total, lacking = source.count_rows(metadata.required_columns)
    check_rows(total, metadata)
    if lacking:
        raise DatasetUnavailable(
            f"{lacking} row(s) have no value in a column that needs one "
            f"({', '.join(metadata.required_columns)}: the person id and not-nullable columns)"
        )


def _check_user_name(name: str) -> None:
    if not name or len(name) > 128 or not name.isprintable() or name != name.strip():
        raise InvalidRequest("a user name is 1-128 printable characters without surrounding spaces")
