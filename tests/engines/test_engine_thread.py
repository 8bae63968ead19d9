"""The engine thread's time limits: a job past its limit is stopped, and never blocks the next."""

from __future__ import annotations

import threading
import time

import duckdb
import pytest

from lomas_server.engines.engine_thread import (
    PLAN,
    QUERY,
    EngineThread,
    TimeLimits,
    interruptible,
)
from lomas_server.errors import EngineBusy, TimeLimitExceeded


@pytest.fixture
def engine():
    thread = EngineThread(TimeLimits(plan_seconds=0.3, query_seconds=0.5, max_stuck=2))
    yield thread
    thread.close()


def test_a_job_within_its_limit_returns_its_value_or_raises_its_error(engine):
    assert engine.run(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        engine.run(lambda: 1 / 0)


def test_python_code_past_its_limit_is_stopped_and_the_next_job_runs(engine):
    steps = []

    def endless() -> None:
        while True:
            steps.append(1)
            time.sleep(0.001)

    with pytest.raises(TimeLimitExceeded) as refused:
        engine.run(endless, stage=PLAN)
    assert refused.value.stage == PLAN and refused.value.status == 503
    assert "nothing was spent" in refused.value.message
    # The loop really stopped: it takes no more steps, and the engine serves the next job.
    counted = len(steps)
    time.sleep(0.2)
    assert len(steps) == counted
    assert engine.run(lambda: "next") == "next"
    engine.check_ready()  # stopped in place: no worker was left behind


def test_duckdb_past_its_limit_is_interrupted(engine):
    connection = duckdb.connect(":memory:")

    def long_scan() -> int:
        with interruptible(connection.interrupt):
            return connection.execute("SELECT SUM(i) FROM range(100000000000) t(i)").fetchone()[0]

    with pytest.raises(TimeLimitExceeded) as refused:
        engine.run(long_scan, stage=QUERY)
    assert refused.value.stage == QUERY
    engine.check_ready()  # DuckDB returned at once: the worker is still the engine's
    assert engine.run(lambda: connection.execute("SELECT 42").fetchone()[0]) == 42


def test_native_code_past_its_limit_is_left_behind_and_runs_no_further_line(engine):
    """A wait on a lock stands for a native call that cannot be interrupted (a Polars plan):
    the caller gets its answer at the limit, a fresh worker serves the next job, and the old
    one stops the moment the native call returns, before the job's next line."""
    release = threading.Event()
    lines_after: list[int] = []

    def stuck() -> None:
        release.wait()  # blocks in C: a pending JobStopped fires only when it returns
        lines_after.append(1)

    with pytest.raises(TimeLimitExceeded):
        engine.run(stuck, stage=QUERY, owner="alice")
    # Another analyst's job runs while the first is still inside its native call; alice's own
    # new work is refused until hers has ended.
    assert engine.run(lambda: "served", owner="bob") == "served"
    with pytest.raises(EngineBusy, match="your earlier query"):
        engine.run(lambda: "refused", owner="alice")
    # max_stuck=2: with two workers left behind, everyone's work is refused before anything
    # is spent.
    with pytest.raises(TimeLimitExceeded):
        engine.run(stuck, stage=QUERY, owner="carol")
    with pytest.raises(EngineBusy):
        engine.check_ready("bob")
    with pytest.raises(EngineBusy):
        engine.run(lambda: "refused", owner="bob")
    left_behind = [t for t in threading.enumerate() if t.name.startswith("dp-engine")]
    release.set()
    for worker in left_behind:
        if worker is not threading.current_thread():
            worker.join(0.5)
    assert lines_after == []  # JobStopped fired before the line after the native call
    engine.check_ready("alice")  # once they ended, the engine takes work again
    assert engine.run(lambda: "again", owner="alice") == "again"


def test_close_answers_waiting_callers_at_once_and_refuses_new_jobs():
    engine = EngineThread(TimeLimits(plan_seconds=60, query_seconds=60))
    started = threading.Event()
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            engine.run(lambda: (started.set(), time.sleep(30)), stage=QUERY)
        except BaseException as err:  # recorded for the assertion below
            outcome.append(err)

    caller = threading.Thread(target=waiter)
    caller.start()
    assert started.wait(10)
    engine.close()
    caller.join(5)
    assert not caller.is_alive(), "a caller kept waiting for a job of a closed engine"
    assert isinstance(outcome[0], EngineBusy)
    with pytest.raises(EngineBusy):
        engine.run(lambda: 1)


def test_owners_take_turns():
    """One analyst's queued jobs do not make another's wait for all of them."""
    engine = EngineThread(TimeLimits(plan_seconds=30, query_seconds=30))
    gate = threading.Event()
    order: list[str] = []

    def job(name: str) -> None:
        gate.wait(10)
        order.append(name)

    try:
        callers = [
            threading.Thread(target=engine.run, args=(job, f"a{i}"), kwargs={"owner": "alice"})
            for i in range(4)
        ]
        for caller in callers:
            caller.start()
            time.sleep(0.05)  # queued in this order
        late = threading.Thread(target=engine.run, args=(job, "b0"), kwargs={"owner": "bob"})
        late.start()
        time.sleep(0.1)
        gate.set()
        for caller in [*callers, late]:
            caller.join(10)
        # alice's first job was already running; bob's comes before the rest of hers.
        assert order == ["a0", "b0", "a1", "a2", "a3"]
    finally:
        engine.close()


def test_several_workers_run_jobs_at_once():
    """Two jobs that each wait for the other end only if they run at the same time."""
    engine = EngineThread(TimeLimits(plan_seconds=10, query_seconds=10), workers=2)
    try:
        assert _meet(engine, ("alice", "bob")) == [0, 1]
    finally:
        engine.close()


def _meet(engine: EngineThread, owners: tuple[str, str]) -> list[int]:
    """Two owners' jobs that each wait for the other: both end (their barrier places, sorted)
    only if the engine runs them at the same time; otherwise the barrier breaks."""
    both = threading.Barrier(2, timeout=5)
    results: list[int] = []
    callers = [
        threading.Thread(target=lambda o=o: results.append(engine.run(both.wait, owner=o)))
        for o in owners
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    return sorted(results)


def test_one_owner_never_takes_more_than_max_per_owner_workers():
    """With 3 workers and at most 2 per owner, alice's third job waits, bob's runs at once."""
    engine = EngineThread(TimeLimits(plan_seconds=10, query_seconds=10), workers=3, max_per_owner=2)
    gate = threading.Event()
    running: list[str] = []
    lock = threading.Lock()

    def job(name: str) -> str:
        with lock:
            running.append(name)
        gate.wait(10)
        return name

    try:
        callers = [
            threading.Thread(target=engine.run, args=(job, f"a{i}"), kwargs={"owner": "alice"})
            for i in range(3)
        ]
        for caller in callers:
            caller.start()
        time.sleep(0.3)
        assert sorted(running) == ["a0", "a1"]  # the third worker stays free for others
        assert engine.run(lambda: "bob served", owner="bob") == "bob served"
        gate.set()
        for caller in callers:
            caller.join(10)
        assert sorted(running) == ["a0", "a1", "a2"]  # and alice's third ran after
    finally:
        engine.close()


def test_a_stuck_job_among_several_workers_is_replaced_and_the_others_keep_running():
    engine = EngineThread(
        TimeLimits(plan_seconds=0.3, query_seconds=0.3, max_stuck=2), workers=2, name="pool"
    )
    release = threading.Event()
    try:
        with pytest.raises(TimeLimitExceeded):
            engine.run(release.wait, stage=QUERY, owner="alice")
        # Two workers still serve: two jobs that need each other both end.
        assert _meet(engine, ("bob", "carol")) == [0, 1]
        with pytest.raises(EngineBusy, match="your earlier query"):
            engine.check_ready("alice")
    finally:
        release.set()
        engine.close()


def test_an_engine_needs_a_worker():
    with pytest.raises(ValueError):
        EngineThread(workers=0)
    with pytest.raises(ValueError):
        EngineThread(workers=2, max_per_owner=0)
