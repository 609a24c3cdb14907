"""Progress reporting: a live bar only on a terminal, a few summary lines in logs (issue: tqdm floods CI)."""

from __future__ import annotations

import io

from pipelines.train.progress import is_interactive, progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_non_interactive_stream_gets_a_few_summary_lines_not_a_bar() -> None:
    out = io.StringIO()
    items = list(progress(range(1000), desc="embedding", unit="batch", stream=out))
    assert items == list(range(1000))
    text = out.getvalue()
    lines = text.splitlines()
    assert 2 <= len(lines) <= 5, text
    assert "\r" not in text
    assert lines[0].startswith("embedding: 1000 batch(s)")
    assert lines[-1].startswith("embedding: done, 1000 batch(s)")


def test_terminal_gets_the_live_bar() -> None:
    out = _Tty()
    assert is_interactive(out)
    assert list(progress(range(50), desc="embedding", stream=out)) == list(range(50))
    assert "\r" in out.getvalue()  # tqdm redraws in place


def test_generator_without_length_still_reports_done() -> None:
    out = io.StringIO()
    assert sum(progress((i for i in range(7)), desc="x", stream=out)) == 21
    assert "done, 7" in out.getvalue()
    assert not is_interactive(io.StringIO())
