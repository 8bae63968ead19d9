"""A new SQLite admin store (archives, dataset credentials) is readable by its owner only."""

from __future__ import annotations

import os
import stat

import pytest

from lomas_server.store.sqlite import SqliteStore
from lomas_server.tokens import hash_token


@pytest.fixture
def open_umask():
    """The common default umask, under which files are created readable by everyone."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_store_and_its_wal_files_are_0600_in_a_0700_folder(tmp_path, open_umask):
    path = tmp_path / "created" / "admin.sqlite"
    store = SqliteStore(path)
    try:
        store.add_user("alice", hash_token("lomas_x"), is_admin=False)  # a write: WAL in use
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        for file in files:
            assert file.exists(), file
            assert _mode(file) == 0o600, (file, oct(_mode(file)))
        assert _mode(path.parent) == 0o700
    finally:
        store.close()


def test_an_existing_folder_keeps_its_mode(tmp_path, open_umask):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    SqliteStore(folder / "admin.sqlite").close()
    assert _mode(folder) == 0o755
    assert _mode(folder / "admin.sqlite") == 0o600


def test_an_existing_readable_store_is_reported(tmp_path, open_umask, caplog):
    path = tmp_path / "admin.sqlite"
    SqliteStore(path).close()
    path.chmod(0o644)
    SqliteStore(path).close()
    assert "can be read by other users" in caplog.text
    assert _mode(path) == 0o644  # the admin's file is not changed behind their back
