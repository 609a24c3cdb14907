"""Progress for long loops: a live tqdm bar on a terminal, a few summary lines anywhere else.

Why: CI logs and redirected output (`make demo > log`) got hundreds of carriage-return bar updates.
On a terminal (stderr is a TTY) the bar is tqdm's; otherwise at most `lines` plain lines go to
stderr (start, a few quarter marks, done with the rate), so a log shows what ran and how fast.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TextIO, TypeVar

T = TypeVar("T")


def is_interactive(stream: TextIO | None = None) -> bool:
    """True when `stream` (default stderr) is a terminal: the only place a live bar belongs."""
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(
    items: Iterable[T],
    *,
    desc: str,
    unit: str = "it",
    total: int | None = None,
    stream: TextIO | None = None,
    lines: int = 4,
) -> Iterator[T]:
    """Iterate `items` with a live bar on a TTY, else with at most `lines` + 1 summary lines."""
    out = stream if stream is not None else sys.stderr
    if total is None and isinstance(items, Sized):
        total = len(items)
    if is_interactive(out):
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=desc, unit=unit, total=total, leave=False, file=out)
        return
    start = time.perf_counter()
    marks = {max(1, round(total * k / lines)) for k in range(1, lines)} if total else set()
    print(f"{desc}: {total if total is not None else '?'} {unit}(s) ...", file=out, flush=True)
    done = 0
    for item in items:
        yield item
        done += 1
        if done in marks and total:
            print(f"{desc}: {done}/{total} {unit}(s)", file=out, flush=True)
    elapsed = time.perf_counter() - start
    rate = f", {done / elapsed:.1f} {unit}/s" if elapsed > 0 and done else ""
    print(f"{desc}: done, {done} {unit}(s) in {elapsed:.1f}s{rate}", file=out, flush=True)
