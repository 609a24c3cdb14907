"""What the router sends a remote classifier: the head and tail of a long text, never all of it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from serving.router import Router, RouteRequest
from serving.router.classify import HTTP_TEXT_CAP_CHARS, cap_text
from serving.router.decision import ClassifierConsulted
from serving.router.policy import Policy
from tests.support.fake_classifier import FakeClassifier


def test_long_text_is_cut_to_head_and_tail_over_http(
    make_policy: Callable[..., Policy], classifier_server: FakeClassifier
) -> None:
    text = "HEAD " + "filler words " * 8000 + " TAIL?"
    router = Router(make_policy(), ledger=None)
    try:
        d = router.decide(RouteRequest.from_text(text))
        assert any(isinstance(s, ClassifierConsulted) and s.status == "ok" for s in d.trace)
        sent = classifier_server.last_texts[0]
        assert len(sent) == 2 * HTTP_TEXT_CAP_CHARS + 1 < len(text)
        assert sent.startswith("HEAD ") and sent.endswith(" TAIL?") and sent == cap_text(text)
        asyncio.run(router.adecide(RouteRequest.from_text(text)))  # the async client sends the same
        assert classifier_server.last_texts[0] == sent
        short = "What is the capital of France?"
        router.decide(RouteRequest.from_text(short))
        assert classifier_server.last_texts == [short]  # short texts go as they are
    finally:
        router.close()
