"""How much work one SmartNoise-SQL release costs the server, counted rather than timed.

Runs one warm ``%%lomas_sql``-like release (a grouped COUNT on PENGUIN, planned and loaded
once before) through the analyst service in-process, under cProfile, and prints the calls
to lomas_server functions on the request thread, the metadata parses, the data source
builds and the store reads it made. (The engine thread's own work is not counted: cProfile
follows one thread.)

    .venv/bin/python benchmarks/count_request_work.py
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lomas_server.api_requests import SqlRequest
from lomas_server.service.admin import AdminService
from lomas_server.store.sqlite import SqliteStore
from tests.conftest import analyst_service, seed_datasets

QUERY = "SELECT species, COUNT(*) AS n FROM df GROUP BY species"
STORE_READS = ("get_dataset", "get_grant", "get_user", "spent", "dataset_spent", "find_release")


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    store = SqliteStore(folder / "admin.sqlite")
    admin = AdminService(store)
    seed_datasets(admin, folder / "data")
    admin.add_user("analyst")
    admin.grant("analyst", "PENGUIN", 100.0, 1e-3)
    service, thread = analyst_service(store)
    request = SqlRequest(QUERY, 0.5, 0.0, postprocess=True, fresh=True)
    service.release("analyst", "PENGUIN", request)  # loads the data and remembers the plan
    profile = cProfile.Profile()
    profile.enable()
    service.release("analyst", "PENGUIN", request)
    profile.disable()
    thread.close()
    stats = pstats.Stats(profile).stats
    ours = {key: value for key, value in stats.items() if "/lomas_server/" in key[0]}

    def calls(name: str, module: str = "") -> int:
        return sum(v[1] for k, v in ours.items() if k[2] == name and k[0].endswith(module))

    reads = {
        name: sum(v[1] for k, v in ours.items() if k[2] == name and "/store/sqlite" in k[0])
        for name in STORE_READS
    }
    print(f"one warm release of: {QUERY}")
    print(f"  calls to lomas_server functions: {sum(v[1] for v in ours.values())}")
    print(f"  distinct lomas_server functions: {len(ours)}")
    print(f"  metadata parses (DatasetMetadata.from_dict): {calls('from_dict', 'metadata.py')}")
    print(f"  data source builds (source_from_description): {calls('source_from_description')}")
    print(f"  store reads: {sum(reads.values())} {reads}")


if __name__ == "__main__":
    main()
