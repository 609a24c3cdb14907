"""Classifier clients a router (or any program) calls: over HTTP (`http`: sync and async) or in
process on a local bundle (`inprocess`), one `classify(texts)` protocol and one family of typed
errors (`contract`) for all of them.
"""

from serving.client.contract import (
    AsyncClassifierBackend,
    ClassifierBackend,
    ClassifierBadResponse,
    ClassifierError,
    ClassifierTimeout,
    ClassifierUnavailable,
)
from serving.client.deadline import CancellableBackend, CoalescingClassifier
from serving.client.http import AsyncClassifierClient, ClassifierClient
from serving.client.inprocess import BundleClassifier, result_dict

__all__ = [
    "AsyncClassifierBackend",
    "AsyncClassifierClient",
    "BundleClassifier",
    "CancellableBackend",
    "ClassifierBackend",
    "ClassifierBadResponse",
    "ClassifierClient",
    "ClassifierError",
    "ClassifierTimeout",
    "ClassifierUnavailable",
    "CoalescingClassifier",
    "result_dict",
]
