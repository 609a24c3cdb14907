"""What every classifier backend promises: the protocols a router calls and the typed errors it catches.

`ClassifierTimeout`, `ClassifierUnavailable` (cannot connect, a 5xx, a broken local model) and
`ClassifierBadResponse` (not JSON, wrong shape or count, a 4xx) all derive from `ClassifierError`,
so "anything went wrong -> fall back to rules" is one `except`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from serving.schemas import ClassifyResponse


class ClassifierError(Exception):
    """Anything that kept the classifier from answering usefully."""


class ClassifierTimeout(ClassifierError):
    """No answer within the timeout."""


class ClassifierUnavailable(ClassifierError):
    """Could not connect, or the service answered with a 5xx."""


class ClassifierBadResponse(ClassifierError):
    """The service answered, but not with a usable classify response."""


@runtime_checkable
class ClassifierBackend(Protocol):
    """What a router needs from a classifier: texts in, one result per text out, in order."""

    def classify(self, texts: Sequence[str]) -> ClassifyResponse: ...


@runtime_checkable
class AsyncClassifierBackend(Protocol):
    """The async form of `ClassifierBackend`."""

    async def classify(self, texts: Sequence[str]) -> ClassifyResponse: ...
