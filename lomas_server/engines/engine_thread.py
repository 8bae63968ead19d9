"""One thread for all DP library work in a process.

OpenDP keeps its feature switches ("contrib", "floating-point", ...) in one process-wide set,
and SmartNoise-SQL turns "floating-point" on for its own mechanisms. Running every engine's
work on one thread, one call at a time, is what lets the OpenDP path check that exactly
"contrib" is on for its whole run: nothing else can flip a switch in between.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class EngineThread:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dp-engine")

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        return self._executor.submit(fn, *args).result()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
