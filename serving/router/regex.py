"""Rule regexes on untrusted text: RE2 (linear time, no catastrophic backtracking), bounded input.

Job: `compile_rule_regex(pattern)` compiles a policy's `prompt_regex` / `system_prompt_regex`
with RE2 (google-re2, already a core dependency for the gate's JSON-Schema patterns) and raises
`ValueError` naming the problem when RE2 cannot take it (look-around and back-references do not
exist in a linear-time engine). `RuleRegex.search(text)` scans at most `SCAN_CHARS` characters
from each end of the text: the head (greetings, "summarise", "translate") and the tail (the last
frames of a stack trace, the question after a pasted document). A pattern thus costs at most
O(2 * SCAN_CHARS) per request however long the message is.

Trade-offs: a cue in the middle of a very long message is not seen; the token-count bands are
what route long messages. RE2's memory per pattern is capped (`MAX_MEM`).
"""

from __future__ import annotations

from typing import Any

SCAN_CHARS = 4096
"""Characters scanned from each end of a text (8 KiB at most per pattern and request)."""
MAX_MEM = 8 << 20


def _options() -> Any:
    import re2

    options = re2.Options()
    options.log_errors = False
    options.max_mem = MAX_MEM
    return options


def check_pattern(pattern: str) -> str:
    """`pattern` when RE2 compiles it, else ValueError saying why (for the policy validator)."""
    RuleRegex(pattern)
    return pattern


def bounded(text: str, limit: int = SCAN_CHARS) -> str:
    """The head and tail of `text` (`limit` characters each), joined by a newline."""
    if len(text) <= 2 * limit:
        return text
    return text[:limit] + "\n" + text[-limit:]


class RuleRegex:
    """A compiled RE2 pattern whose `search` reads a bounded slice of the text."""

    __slots__ = ("_re", "pattern")

    def __init__(self, pattern: str) -> None:
        import re2

        self.pattern = pattern
        try:
            self._re = re2.compile(pattern, _options())
        except (re2.error, UnicodeError, TypeError, ValueError) as exc:
            raise ValueError(
                f"not a valid regular expression for the linear-time engine (RE2: {exc!s:.100}); "
                "look-around and back-references are not available"
            ) from None

    def search(self, text: str) -> bool:
        part = bounded(text)
        try:
            return self._re.search(part) is not None
        except UnicodeError:  # lone surrogates cannot be encoded as UTF-8 for RE2
            return self._re.search(part.encode("utf-8", "replace").decode("utf-8")) is not None
