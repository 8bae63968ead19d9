"""One thread at a time for all DP library work in a process, and a time limit on each job.

(The same machinery with several workers runs the exact aggregations of SQL queries, which
touch no DP library: see ``EngineThread(workers=...)``.)

OpenDP keeps its feature switches ("contrib", "floating-point", ...) in one process-wide set,
and SmartNoise-SQL turns "floating-point" on for its own mechanisms. Running every engine's
work on one thread, one call at a time, is what lets the OpenDP path check that exactly
"contrib" is on for its whole run: nothing else can flip a switch in between.

One thread also means one slow job would hold up every user, so each job has a time limit
(planning and its accuracy summary: ``plan_seconds``; a run on the rows: ``query_seconds``).
When a job passes it, the job is stopped:

1. its interrupters run (e.g. DuckDB's ``interrupt``, a PostgreSQL cancel), and a
   ``JobStopped`` exception is raised inside the worker thread. ``JobStopped`` derives from
   ``BaseException``, so the libraries' ``except Exception`` cannot swallow it; Python code
   stops at its next instruction, native code as soon as it returns to Python;
2. if the worker is still inside native code after a short grace period, it is left to
   finish on its own and a fresh worker takes the next jobs. The pending ``JobStopped``
   fires the moment the old worker returns to Python, before it can run another line of the
   job (and so before it could flip a feature switch), and the old worker then exits.

While one of an analyst's jobs is left behind, that analyst's new jobs are refused
(``EngineBusy``), and at most ``max_stuck`` may be left behind in all (past that, everyone's
are refused until one ends): stuck native calls cannot pile up without bound, and one
analyst's cannot stop the others.
Workers are daemon threads: stopping the server never waits for a job.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lomas_server.errors import EngineBusy, TimeLimitExceeded

T = TypeVar("T")
log = logging.getLogger(__name__)

PLAN = "plan"
QUERY = "query"
STOP_GRACE_SECONDS = 2.0
STOP_RETRY_SECONDS = 0.05


class JobStopped(BaseException):
    """Raised inside a job that passed its time limit or whose server is stopping."""


@dataclass(frozen=True)
class TimeLimits:
    """Seconds a job may run: planning (with its accuracy summary), and a run on the rows."""

    plan_seconds: float = 10.0
    query_seconds: float = 30.0
    max_stuck: int = 6

    def of(self, stage: str) -> float:
        return self.plan_seconds if stage == PLAN else self.query_seconds


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    owner: str = ""
    done: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None
    interrupters: list[Callable[[], None]] = field(default_factory=list)


class _FairQueue:
    """Jobs in turn per owner (the analyst): each owner's jobs run in order, and the next job
    is always from the owner served least recently.

    First come, first served would let one analyst with many requests make every other wait
    for all of them; in turn, another analyst's job waits for at most one job of each owner
    ahead of it.
    """

    def __init__(self, max_per_owner: int | None = None) -> None:
        self._ready = threading.Condition()
        self._by_owner: dict[str, deque[_Job]] = {}
        self._last_served: dict[str, int] = {}
        self._turns = itertools.count()
        self._closed = False
        # With several workers: how many jobs of one owner may run at once, so that one
        # analyst's long queries cannot take every worker while others wait.
        self._max_per_owner = max_per_owner
        # The jobs handed out and not yet finished, per owner: a set, so that finishing a job
        # twice (a stop that fired while it finished, see _Worker) counts it once.
        self._running: dict[str, set[int]] = {}

    def put(self, job: _Job, *, first: bool = False) -> None:
        with self._ready:
            jobs = self._by_owner.setdefault(job.owner, deque())
            if first:
                jobs.appendleft(job)
                self._last_served[job.owner] = -1
            else:
                jobs.append(job)
            self._ready.notify()

    def get(self) -> _Job | None:
        """The next job, or None once closed."""
        with self._ready:
            while not (eligible := self._eligible()) and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            # Dicts keep insertion order: among owners never served, the earliest comes first.
            owner = min(eligible, key=lambda o: self._last_served.get(o, -1))
            jobs = self._by_owner[owner]
            job = jobs.popleft()
            self._running.setdefault(owner, set()).add(id(job))
            if not jobs:
                del self._by_owner[owner]
            self._last_served[owner] = next(self._turns)
            if len(self._last_served) > 10_000:  # forget owners with nothing queued
                self._last_served = {o: self._last_served[o] for o in self._by_owner}
                self._last_served[owner] = next(self._turns)
            return job

    def _eligible(self) -> list[str]:
        """Owners with a job waiting and room to run it."""
        if self._max_per_owner is None:
            return list(self._by_owner)
        limit = self._max_per_owner
        return [o for o in self._by_owner if len(self._running.get(o, ())) < limit]

    def finished(self, job: _Job) -> None:
        """``job`` ended (or was left behind): room for its owner's next. Idempotent."""
        with self._ready:
            running = self._running.get(job.owner)
            if running is not None:
                running.discard(id(job))
                if not running:
                    del self._running[job.owner]
            self._ready.notify_all()

    def close(self) -> list[_Job]:
        """Stop handing out jobs; return those still waiting."""
        with self._ready:
            self._closed = True
            waiting = [job for jobs in self._by_owner.values() for job in jobs]
            self._by_owner.clear()
            self._ready.notify_all()
            return waiting


class _Worker(threading.Thread):
    def __init__(self, owner: EngineThread, number: int) -> None:
        super().__init__(name=f"{owner.name}-{number}", daemon=True)
        self.owner = owner
        self.current: _Job | None = None
        self.abandoned = False

    def run(self) -> None:
        while not self.abandoned:
            try:
                if not self._serve_one():
                    return
            except JobStopped:
                # A stop delivered after its job had ended (the waiter decided at the last
                # moment): nothing is left to stop.
                continue

    def _serve_one(self) -> bool:
        queue = self.owner._queue
        job = queue.get()
        if job is None:
            return False
        with self.owner._lock:
            if self.abandoned:  # replaced while waiting: hand the job to the new worker
                queue.finished(job)
                queue.put(job, first=True)
                return False
            self.current = job
        _local.job = job
        job.started.set()
        try:
            job.value = job.fn(*job.args)
        except BaseException as err:  # handed to the waiting caller
            job.error = err
        finally:
            self._finish(job)
        return True

    def _finish(self, job: _Job) -> None:
        # A stop may still fire here, once: it is only raised while ``current`` is the job,
        # and at most one is pending. Each step is repeated until all ran (each is idempotent).
        while True:
            try:
                _local.job = None
                with self.owner._lock:
                    self.current = None
                self.owner._queue.finished(job)
                job.done.set()
                return
            except JobStopped:
                continue


_local = threading.local()


def on_stop(interrupt: Callable[[], None]) -> Callable[[], None]:
    """Register a way to stop the current job's native work early (called from another
    thread when the job passes its limit); returns a function that unregisters it."""
    job: _Job | None = getattr(_local, "job", None)
    if job is None:
        return lambda: None
    job.interrupters.append(interrupt)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            job.interrupters.remove(interrupt)

    return remove


@contextlib.contextmanager
def interruptible(interrupt: Callable[[], None]) -> Iterator[None]:
    """``with interruptible(connection.interrupt): connection.execute(...)``."""
    remove = on_stop(interrupt)
    try:
        yield
    finally:
        remove()


class EngineThread:
    """Jobs run in turn per owner, each within its stage's time limit.

    One worker by default: the DP libraries' thread. ``workers`` > 1 runs that many jobs at
    once (for work that touches no DP library), at most ``max_per_owner`` of one owner's.
    """

    def __init__(
        self,
        limits: TimeLimits | None = None,
        *,
        workers: int = 1,
        max_per_owner: int | None = None,
        name: str = "dp-engine",
    ) -> None:
        if workers < 1 or (max_per_owner is not None and max_per_owner < 1):
            raise ValueError("an engine needs at least one worker, and one job per owner")
        self.limits = limits or TimeLimits()
        self.name = name
        self._queue = _FairQueue(max_per_owner)
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._stuck: list[tuple[_Worker, str]] = []  # left behind, with their job's owner
        self._closed = False
        self._workers = [self._new_worker() for _ in range(workers)]

    def _new_worker(self) -> _Worker:
        worker = _Worker(self, next(self._numbers))
        worker.start()
        return worker

    def run(self, fn: Callable[..., T], *args: Any, stage: str = PLAN, owner: str = "") -> T:
        """Run ``fn(*args)`` on the engine thread within the stage's time limit; ``owner``
        (the analyst) takes turns with other owners.

        Raises ``TimeLimitExceeded`` (the job was stopped) or ``EngineBusy``.
        """
        self.check_ready(owner)
        job = _Job(fn, args, owner)
        self._queue.put(job)
        # The limit counts from when the job starts: waiting behind others is bounded by
        # their own limits.
        while not job.started.wait(1.0):
            if self._closed:
                raise EngineBusy("the server is stopping")
        limit = self.limits.of(stage)
        if not job.done.wait(limit):
            self._stop(job)
            raise TimeLimitExceeded(stage, limit)
        if job.error is not None:
            if isinstance(job.error, JobStopped):
                raise EngineBusy("the server is stopping") from None
            raise job.error
        return job.value

    def check_ready(self, owner: str = "") -> None:
        """Raise ``EngineBusy`` now if a job of ``owner`` would be refused (before anything
        is spent): while one of their own jobs is still finishing after its time limit, or
        while ``max_stuck`` jobs of anyone are."""
        if self._closed:
            raise EngineBusy("the server is stopping")
        with self._lock:
            self._stuck = [(w, o) for w, o in self._stuck if w.is_alive()]
            if any(o == owner for _, o in self._stuck):
                raise EngineBusy(
                    "your earlier query that passed its time limit is still finishing; "
                    "try again in a minute"
                )
            if len(self._stuck) >= self.limits.max_stuck:
                raise EngineBusy(
                    "the server is finishing queries that passed their time limit; "
                    "try again in a minute"
                )

    def _running(self, job: _Job) -> _Worker | None:
        """The worker running ``job`` (call with the lock held)."""
        return next((w for w in self._workers if w.current is job), None)

    def _stop(self, job: _Job) -> None:
        """Stop a running job; replace its worker if it does not stop within the grace."""
        with self._lock:
            worker = self._running(job)
            if worker is None:
                return  # it ended meanwhile
            for interrupt in list(job.interrupters):
                try:
                    interrupt()
                except Exception:  # an interrupter must not mask the stop
                    log.exception("interrupting a job that passed its time limit failed")
        # Raised again until it takes: Python drops an exception that arrives while a
        # finalizer (``__del__``) runs, and the libraries free many objects that way.
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            with self._lock:
                if worker.current is not job:
                    return  # stopped (or ended meanwhile)
                _raise_in(worker, JobStopped)
            if job.done.wait(STOP_RETRY_SECONDS):
                return
        with self._lock:
            if worker.current is not job:
                return
            # Stuck in native code: leave it, with its JobStopped pending, to a fresh worker.
            worker.abandoned = True
            self._stuck.append((worker, job.owner))
            replacement = self._new_worker()
            self._workers[self._workers.index(worker)] = replacement
        self._queue.finished(job)
        log.warning(
            "an engine job passed its time limit inside native code; %s left to end "
            "on its own, %s takes over",
            worker.name,
            replacement.name,
        )

    def close(self) -> None:
        """Stop at once: no new jobs, queued ones refused, the running ones stopped."""
        self._closed = True
        for job in self._queue.close():
            job.error = JobStopped()
            job.started.set()
            job.done.set()
        with self._lock:
            for worker in self._workers:
                running = worker.current
                worker.abandoned = True
                if running is not None:
                    for interrupt in list(running.interrupters):
                        with contextlib.suppress(Exception):
                            interrupt()
                    _raise_in(worker, JobStopped)
                    # Its caller is told now, not when native code returns.
                    running.error = JobStopped()
                    running.done.set()


def _raise_in(thread: threading.Thread, exception: type[BaseException]) -> None:
    """Raise ``exception`` in ``thread`` at its next Python instruction."""
    ident = thread.ident
    if ident is None:
        return
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exception))
