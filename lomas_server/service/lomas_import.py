"""Import a lomas deployment's admin database: its YAML collection files.

lomas keeps users (with per-dataset initial and spent budgets) and datasets (where the rows
and the metadata live) in collection files. Paths in them are relative to lomas's own server
folder, and some point to places unreachable from here, so the administrator can rewrite them
(``remap``). Users get new API tokens (lomas had none); what they had spent is carried over as
one ledger entry per dataset, so their remaining budget is what it was.

lomas's metadata may switch protections off (``censor_dims: false`` in its PENGUIN, say). Each
such option is replaced by the safe behaviour on import and the report says what changed and
what the admin may declare instead (``safe_metadata``).
"""

from __future__ import annotations

import copy
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lomas_server.accounting import PrivacyAmount
from lomas_server.datasets import source_from_location
from lomas_server.errors import Conflict, InvalidRequest, ServiceError
from lomas_server.metadata import WEAKENING_TABLE_OPTIONS
from lomas_server.service.admin import AdminService

log = logging.getLogger(__name__)


@dataclass
class ImportReport:
    datasets: list[str] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=dict)  # name -> new token
    skipped: list[str] = field(default_factory=list)  # "what: why"
    changed: list[str] = field(default_factory=list)  # "dataset: what was made safe, and how"

    def as_dict(self) -> dict[str, Any]:
        return {
            "datasets": self.datasets,
            "users": self.users,
            "skipped": self.skipped,
            "changed": self.changed,
        }


def safe_metadata(document: Any) -> tuple[Any, list[str]]:
    """lomas metadata with every option that would weaken the guarantee replaced by the safe
    behaviour, and a note for each (what changed, what the admin can declare instead)."""
    if not isinstance(document, dict) or not isinstance(document.get("columns"), dict):
        return document, []  # DatasetMetadata says what is wrong with it
    doc = copy.deepcopy(document)
    notes = []
    if doc.get("censor_dims") is False:
        del doc["censor_dims"]
        keyed = [
            name
            for name, column in doc["columns"].items()
            if isinstance(column, dict)
            and column.get("categories")
            and not column.get("public_keys")
        ]
        hint = (
            f"; if the categories of {', '.join(keyed)} are public, add 'public_keys: true' to "
            "them so that groups by them need no delta"
            if keyed
            else ""
        )
        notes.append(
            "'censor_dims: false' removed: groups are now shown in full only for columns with "
            "public keys, others above a DP threshold (queries then need delta)" + hint
        )
    for option, (safe, _) in WEAKENING_TABLE_OPTIONS.items():
        if option in doc and doc[option] is not safe:  # censor_dims was handled above
            notes.append(f"'{option}: {str(doc.pop(option)).lower()}' removed")
    ids = [n for n, c in doc["columns"].items() if isinstance(c, dict) and c.get("private_id")]
    if ids and doc.get("row_privacy") is True:
        for name in ids:
            del doc["columns"][name]["private_id"]
        notes.append(
            f"'private_id' removed from {', '.join(ids)}: with 'row_privacy: true' lomas counted "
            "each row as a person, and so does this server"
        )
    for name, column in doc["columns"].items():
        if not isinstance(column, dict):
            continue
        if "sensitivity" in column:
            del column["sensitivity"]
            notes.append(f"column {name}: 'sensitivity' removed (the bounds decide)")
        missing = column.get("missing_value")
        if "missing_value" in column and (
            isinstance(missing, bool) or not isinstance(missing, (int, float))
        ):
            del column["missing_value"]
            notes.append(f"column {name}: 'missing_value' removed (only numbers are supported)")
    return doc, notes


class LomasImporter:
    def __init__(
        self,
        admin: AdminService,
        *,
        remap: dict[str, str] | None = None,
        base: Path | None = None,
        check_data: bool = True,
    ) -> None:
        self.admin = admin
        self.remap = remap or {}
        self.base = base
        self.check_data = check_data

    def run(self, files: list[Path]) -> ImportReport:
        users: list[Any] = []
        datasets: list[tuple[Any, Path]] = []
        for path in files:
            document = _read_yaml(path)
            if not isinstance(document, dict):
                raise InvalidRequest(f"{path} is neither a lomas user nor a dataset collection")
            if "datasets" in document:
                datasets.extend((entry, path.parent) for entry in document["datasets"] or [])
            if "users" in document:
                users.extend(document["users"] or [])
            if "datasets" not in document and "users" not in document:
                raise InvalidRequest(f"{path} is neither a lomas user nor a dataset collection")
        report = ImportReport()
        for entry, folder in datasets:  # datasets first: grants need them
            self._dataset(entry, folder, report)
        for entry in users:
            self._user(entry, report)
        return report

    # -- datasets ----------------------------------------------------------------------------
    def _dataset(self, entry: dict[str, Any], folder: Path, report: ImportReport) -> None:
        name = entry.get("dataset_name", "?")
        try:
            location, options = self._location(entry["dataset_access"], folder)
            metadata, notes = safe_metadata(self._metadata(entry["metadata_access"], folder))
            self.admin.add_dataset(
                name, location, metadata, source_options=options, check_data=self.check_data
            )
            report.datasets.append(name)
            report.changed.extend(f"dataset {name}: {note}" for note in notes)
        except Conflict:
            report.skipped.append(f"dataset {name}: already exists")
        except ServiceError as err:
            report.skipped.append(f"dataset {name}: {err.message}")
        except (KeyError, TypeError) as err:
            report.skipped.append(f"dataset {name}: incomplete entry ({err})")

    def _location(self, access: dict[str, Any], folder: Path) -> tuple[str, dict[str, Any]]:
        kind = access.get("database_type")
        if kind == "PATH_DB":
            return self._path(access["path"], folder), {}
        if kind == "S3_DB":
            options = {
                "endpoint_url": self._rewrite(access.get("endpoint_url")),
                "access_key_id": access.get("access_key_id"),
                "secret_access_key": access.get("secret_access_key"),
            }
            # lomas names credentials held in its server config ('credentials_name'); without
            # keys here, the server's own AWS environment supplies them.
            return f"s3://{access['bucket']}/{access['key']}", {
                k: v for k, v in options.items() if v
            }
        raise InvalidRequest(f"unsupported lomas database_type {kind!r} (PATH_DB and S3_DB are)")

    def _metadata(self, access: dict[str, Any], folder: Path) -> Any:
        location, options = self._location(access, folder)
        if location.startswith(("s3://", "http://", "https://")):
            # read_bytes does not parse, so the format given here does not matter
            source = source_from_location(location, "csv", **options)
            return yaml.safe_load(io.BytesIO(source.read_bytes()))  # type: ignore[arg-type]
        return _read_yaml(Path(location))

    def _path(self, path: str, folder: Path) -> str:
        rewritten = self._rewrite(path) or path
        if "://" in rewritten or Path(rewritten).is_absolute():
            return rewritten
        return str(((self.base or folder) / rewritten).resolve())

    def _rewrite(self, value: str | None) -> str | None:
        if value is None:
            return None
        for old, new in self.remap.items():
            if value.startswith(old):
                return new + value[len(old) :]
        return value

    # -- users -------------------------------------------------------------------------------
    def _user(self, entry: dict[str, Any], report: ImportReport) -> None:
        name = entry.get("user_name", "?")
        try:
            report.users[name] = self.admin.add_user(name)
        except Conflict:
            report.skipped.append(f"user {name}: already exists")
            return
        except ServiceError as err:
            report.skipped.append(f"user {name}: {err.message}")
            return
        if entry.get("may_query") is False:
            self.admin.set_may_query(name, False)
        for budget in entry.get("datasets_list") or []:
            self._budget(name, budget, report)

    def _budget(self, user: str, budget: dict[str, Any], report: ImportReport) -> None:
        dataset = budget.get("dataset_name", "?")
        if self.admin.store.get_dataset(dataset) is None:
            report.skipped.append(f"budget of {user} on {dataset}: the dataset was not imported")
            return
        try:
            self.admin.grant(
                user, dataset, float(budget["initial_epsilon"]), float(budget["initial_delta"])
            )
            spent = PrivacyAmount.cost(
                budget.get("total_spent_epsilon", 0.0), budget.get("total_spent_delta", 0.0)
            )
        except (KeyError, TypeError, ValueError) as err:
            report.skipped.append(f"budget of {user} on {dataset}: {err}")
            return
        except ServiceError as err:
            report.skipped.append(f"budget of {user} on {dataset}: {err.message}")
            return
        if not spent.is_zero():
            self.admin.store.record_spend(user, dataset, spent, kind="import")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InvalidRequest(f"cannot read {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise InvalidRequest(f"{path} is not valid YAML: {err}") from err
