"""One core for the sync and the async router: steps written once as generators, run by two drivers.

Job: the decision and the execution (classifier call, provider calls, ledger write, gate) are
generators that `yield` an `Op` wherever they need I/O and receive its result (or its exception,
thrown back in). `drive()` runs an op by calling it; `adrive()` awaits its async form. So
`decide`/`adecide` and `complete`/`acomplete` share every line of routing logic; only the
three kinds of I/O below differ.

Trade-offs: a generator per request costs a few microseconds, nothing next to a provider call; in
exchange there is no sync/async twin to keep in step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Op(Protocol):
    """A piece of I/O a core step needs: `run()` for the sync driver, `arun()` for the async one."""

    def run(self) -> Any: ...

    def arun(self) -> Awaitable[Any]: ...


Core = Generator[Op, Any, T]


class Call:
    """Call `fn(*args)`, or await `afn(*args)` under the async driver."""

    __slots__ = ("afn", "args", "fn")

    def __init__(self, fn: Callable[..., Any], afn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self.fn, self.afn, self.args = fn, afn, args

    def run(self) -> Any:
        return self.fn(*self.args)

    def arun(self) -> Awaitable[Any]:
        return self.afn(*self.args)


class Blocking:
    """Blocking work (fsync, a locked SQLite file, an HTTP gate): inline when sync, a worker thread
    when async (never on the event loop). `offload=False` keeps cheap work inline in both."""

    __slots__ = ("args", "fn", "offload")

    def __init__(self, fn: Callable[..., Any], *args: Any, offload: bool = True) -> None:
        self.fn, self.args, self.offload = fn, args, offload

    def run(self) -> Any:
        return self.fn(*self.args)

    async def arun(self) -> Any:
        if self.offload:
            return await asyncio.to_thread(self.fn, *self.args)
        return self.fn(*self.args)


def drive(core: Core[T]) -> T:
    """Run a core step synchronously."""
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                op = core.send(value) if error is None else core.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                value = op.run()
            except Exception as exc:  # handed to the step, which decides what it means
                error = exc
    finally:
        core.close()


async def adrive(core: Core[T]) -> T:
    """Run a core step on an event loop (cancellation propagates and closes the step)."""
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                op = core.send(value) if error is None else core.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            value, error = None, None
            try:
                value = await op.arun()
            except Exception as exc:  # handed to the step, which decides what it means
                error = exc
    finally:
        core.close()
