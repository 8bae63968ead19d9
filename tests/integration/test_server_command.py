"""``lomas-server`` as a command: help, and a clear exit on a broken configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port


def _run(*args: str, tmp_path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lomas_server",
            *args,
            f"--port={free_port()}",
            "--allow-root",
            f"--ServerApp.root_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize(
    ("store", "mentions"),
    [
        ("postgres://db/lomas", "unsupported admin store URL scheme"),
        ("sqlite:////proc/no-such-folder/admin.sqlite", "cannot create the folder"),
    ],
)
def test_broken_store_stops_the_server_with_one_line(tmp_path, store, mentions):
    done = _run(f"--store={store}", tmp_path=tmp_path)
    assert done.returncode == 2
    assert "lomas-server: " in done.stderr and mentions in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("option", "mentions"),
    [
        ("--LomasServerApp.duckdb_memory_bytes=5", "at least 64 MiB"),
        ("--LomasServerApp.scan_parquet_above_bytes=-1", "must be 0"),
    ],
)
def test_out_of_range_options_stop_the_server_with_a_reason(tmp_path, option, mentions):
    done = _run(option, f"--store=sqlite:///{tmp_path}/a.sqlite", tmp_path=tmp_path)
    assert done.returncode != 0
    assert mentions in done.stderr
    assert "Traceback" not in done.stderr


def test_help_documents_the_options():
    done = subprocess.run(
        [sys.executable, "-m", "lomas_server", "--help-all"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    for option in (
        "--store",
        "LomasServerApp.max_query_epsilon",
        "LomasServerApp.dataset_cache_bytes",
        "LomasServerApp.scan_parquet_above_bytes",
        "LomasServerApp.duckdb_memory_bytes",
        "LomasServerApp.identity_provider_class",
    ):
        assert option in done.stdout


def test_jupyter_subcommand_is_the_same_app():
    done = subprocess.run(
        [str(Path(sys.executable).with_name("jupyter")), "lomas-server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Differentially private queries" in done.stdout
