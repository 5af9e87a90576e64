"""What several workers rely on: the setting, a protocol named by import string, a journal lock never seen free,
an exclusive model cache."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from uvicorn.config import Config
from uvicorn.importer import import_from_string

from helpers import REPO_ROOT
from serving.http import PROTOCOL, BoundedHeadProtocol, bounded_head_protocol
from serving.log.journal import Journal, orphans
from serving.metrics import forget_dead_workers
from serving.model_store import LOCK_FILE, cache_lock
from serving.settings import ServeSettings
from tabloop.errors import ConfigError
from tabloop.settings import from_environment


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.chdir(REPO_ROOT)
    for name in list(os.environ):
        if name.startswith("TABLOOP_SERVE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_one_worker_by_default_and_a_bad_count_names_its_variable(environment: pytest.MonkeyPatch) -> None:
    assert from_environment(ServeSettings).workers == 1
    environment.setenv("TABLOOP_SERVE_WORKERS", "3")
    assert from_environment(ServeSettings).workers == 3
    environment.setenv("TABLOOP_SERVE_WORKERS", "0")
    with pytest.raises(ConfigError, match="TABLOOP_SERVE_WORKERS"):
        from_environment(ServeSettings)


def test_the_protocol_is_named_by_an_import_string_and_bounded_by_uvicorn_setting() -> None:
    assert import_from_string(PROTOCOL) is BoundedHeadProtocol
    config = Config("serving.app:create_worker_app", http=PROTOCOL, h11_max_incomplete_event_size=2048)
    assert config.h11_max_incomplete_event_size == 2048  # what each worker's protocol reads its bound from
    assert issubclass(bounded_head_protocol(4096), BoundedHeadProtocol)
    assert bounded_head_protocol(4096).max_head_bytes == 4096


def test_a_live_journal_is_locked_under_its_own_name_from_the_start(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    try:
        assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".jsonl") == [f"{journal.owner}.lock"]
        assert orphans(tmp_path) == []  # a second process (here: another descriptor) sees it taken
    finally:
        journal.close(delete=True)
    assert list(tmp_path.iterdir()) == []


def test_the_model_cache_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "model"
    with cache_lock(cache):
        fd = os.open(cache / LOCK_FILE, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(cache / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the holder is done
    finally:
        os.close(fd)


def test_a_killed_worker_live_gauges_are_dropped_by_the_next_worker(tmp_path: Path) -> None:
    dead = 2**22 + 12345  # above the largest pid Linux can give (2**22): no such process
    for name in (f"gauge_livesum_{dead}.db", f"gauge_livemax_{dead}.db", f"gauge_livesum_{os.getpid()}.db"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / f"counter_{dead}.db").write_bytes(b"")
    forget_dead_workers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"counter_{dead}.db", f"gauge_livesum_{os.getpid()}.db"]


def test_the_metrics_directory_is_prometheus_own_variable(environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    environment.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert from_environment(ServeSettings).metrics_dir == tmp_path
