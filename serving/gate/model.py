"""Load and run a gate bundle, and combine it with the deterministic checks into one decision.

Job: `GateModel.load(folder)` verifies a `kind: "gate"` bundle (manifest schema, sha256 of every
file, signals version) and runs its single ONNX graph (see `pipelines.gate_export`) with
onnxruntime, tokenizers and numpy only. `GateModel.decide(items)` is what `/v1/gate` and the
router's cascade call: deterministic checks first (a failure short-circuits the model for that
item), then one batched model call for the items that passed.

Trade-offs:
- Prompt and response are tokenised separately with their own truncation (`text.prompt`,
  `text.response` in bundle.json; head+tail for the response so both the opening, where refusals
  sit, and the ending, where truncation shows, are seen). Their token budgets are the main
  latency knob: the encoder cost grows with tokens, and the gate must stay inside a cascade's
  latency budget.
- The threshold on P(acceptable) comes from the bundle (`thresholds.p_acceptable`, calibrated at
  training time for a target false-accept rate) and can be overridden per call.
- int8 encoders quantise activations per batch (DynamicQuantizeLinear), so an item's score would
  depend on its batch-mates and their padding; an int8 gate therefore runs one item per session
  call (training embedded one text per call too, so served scores equal training-time scores).
  fp32 gates run the whole batch in one call (batch-invariant to ~1e-7).
- A model rejection is named `refusal` only when the reason head's P(refusal) reaches the bundle's
  `thresholds.reason_refusal` (chosen on the hand labels; the phrase-list check names the others).
- Without a model (`decide_without_model`) the checks alone decide; `decided_by` says which path
  was taken so traces can show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from serving.gate.checks import InvalidSchemaError, check_response
from serving.gate.signals import SIGNAL_NAMES, SUPPORTED_SIGNALS_VERSIONS, signals_batch
from serving.model.bundle import (
    SELF_CHECK_ATOL,
    BundleError,
    open_session,
    open_tokenizer,
    read_manifest,
    runs_per_item,
)
from serving.model.textprep import TruncationSpec

GATE_KIND = "gate"
INPUT_SIDES: tuple[str, str] = ("prompt", "response")
SIGNALS_INPUT = "signals"
ACCEPTABLE_HEAD = "acceptable"
REASON_HEAD = "reason"
SELF_CHECK_PAIRS = (
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Write a haiku about autumn.", "I'm sorry, but I can't help with that."),
)

DecidedBy = Literal["checks", "model", "checks_only"]


@dataclass(frozen=True)
class GateItem:
    """One (prompt, response) to judge, with what the provider said about the response."""

    prompt: str
    response: str
    expect_json: bool = False
    json_schema: dict[str, Any] | None = None
    finish_reason: str | None = None
    mean_logprob: float | None = None
    min_chars: int | None = None


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict for one item.

    `reasons`: deterministic reason codes (`serving.gate.checks.REASONS`) when the checks failed,
    else the learned reason (e.g. "off_instruction", "incorrect") when the model rejected it.
    `p_acceptable` is None when the model did not run (checks failed, or no model loaded).
    """

    acceptable: bool
    p_acceptable: float | None
    reasons: list[str] = field(default_factory=list)
    decided_by: DecidedBy = "checks"
    reason_probs: dict[str, float] | None = None

    def to_result(self) -> dict[str, Any]:
        return {
            "acceptable": self.acceptable,
            "p_acceptable": self.p_acceptable,
            "reasons": list(self.reasons),
            "decided_by": self.decided_by,
        }


@dataclass(frozen=True)
class GateScores:
    p_acceptable: np.ndarray  # [N]
    reason_probs: np.ndarray | None  # [N, K]
    prompt_embedding: np.ndarray
    response_embedding: np.ndarray
    truncated: np.ndarray  # [N] bool: response longer than the encoder's budget


def run_checks(item: GateItem) -> list[str]:
    return check_response(
        item.prompt,
        item.response,
        expect_json=item.expect_json,
        json_schema=item.json_schema,
        finish_reason=item.finish_reason,
        mean_logprob=item.mean_logprob,
        min_chars=item.min_chars,
    ).reasons


def decide_without_model(items: Sequence[GateItem]) -> list[GateDecision]:
    """Deterministic checks only (the fallback when no gate model is loaded or it is unreachable)."""
    out = []
    for item in items:
        reasons = run_checks(item)
        out.append(GateDecision(not reasons, None, reasons, "checks" if reasons else "checks_only"))
    return out


class GateModel:
    """A loaded, verified gate bundle."""

    def __init__(self, path: Path, manifest: dict[str, Any], threads: int = 1) -> None:
        self.path = Path(path)
        self.manifest = manifest
        if manifest.get("kind") != GATE_KIND:
            raise BundleError(f"{path}: bundle kind is {manifest.get('kind')!r}, expected {GATE_KIND!r}")
        try:
            text = manifest["text"]
            self.prompt_spec = TruncationSpec.from_dict(text["prompt"])
            self.response_spec = TruncationSpec.from_dict(text["response"])
            sig = manifest["signals"]
            heads = {h["name"]: (tuple(h["labels"]), h["output"]) for h in manifest["heads"]}
            self.threshold = float(manifest["thresholds"]["p_acceptable"])
            self.refusal_min = float(manifest["thresholds"].get("reason_refusal", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{path}: malformed gate manifest ({exc})") from exc
        try:
            self.signals_version = int(sig.get("version", -1))
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{path}: malformed gate manifest ({exc})") from exc
        if self.signals_version not in SUPPORTED_SIGNALS_VERSIONS or list(sig.get("names", [])) != list(
            SIGNAL_NAMES
        ):
            raise BundleError(
                f"{path}: bundle was trained with signals v{sig.get('version')}, this runtime computes "
                f"{', '.join(f'v{v}' for v in SUPPORTED_SIGNALS_VERSIONS)}; retrain the gate with this "
                "version of tierroute"
            )
        if ACCEPTABLE_HEAD not in heads or heads[ACCEPTABLE_HEAD][0] != ("unacceptable", "acceptable"):
            raise BundleError(
                f"{path}: gate bundle needs an 'acceptable' head labelled (unacceptable, acceptable)"
            )
        self.acceptable_output = heads[ACCEPTABLE_HEAD][1]
        self.reason_labels: tuple[str, ...] | None = heads[REASON_HEAD][0] if REASON_HEAD in heads else None
        self.reason_output = heads[REASON_HEAD][1] if REASON_HEAD in heads else None
        self.prompt_tokenizer = open_tokenizer(self.path, self.prompt_spec)
        self.response_tokenizer = open_tokenizer(self.path, self.response_spec)
        self.session = open_session(self.path, threads)
        names = {o.name for o in self.session.get_outputs()}
        self._outputs = [self.acceptable_output, "prompt_embedding", "response_embedding"]
        if self.reason_output is not None:
            self._outputs.append(self.reason_output)
        if not set(self._outputs) <= names:
            raise BundleError(f"{path}: graph lacks outputs {sorted(set(self._outputs) - names)}")
        self.per_item = runs_per_item(manifest)
        self.ref: dict[str, str | None] = {"name": str(manifest["name"]), "version": None, "alias": None}

    @classmethod
    def load(cls, path: Path, threads: int = 1) -> GateModel:
        manifest = read_manifest(Path(path))
        return cls(Path(path), manifest, threads=threads)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    def describe(self) -> dict[str, Any]:
        """What `/v1/gate` reports as `model`."""
        return {
            **self.ref,
            "threshold": self.threshold,
            "target_false_accept_rate": self.manifest["thresholds"].get("target_false_accept_rate"),
            "created_at": self.manifest.get("created_at"),
        }

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> GateScores:
        """Raw model outputs for aligned prompts/responses (no checks, no threshold)."""
        n = len(prompts)
        if n != len(responses):
            raise ValueError(f"{n} prompts but {len(responses)} responses")
        if n == 0:
            empty = np.zeros((0, 384), np.float32)
            return GateScores(np.zeros(0), None, empty, empty, np.zeros(0, bool))
        if self.per_item and n > 1:
            parts = [self._score([prompts[i]], [responses[i]]) for i in range(n)]
            return GateScores(
                p_acceptable=np.concatenate([s.p_acceptable for s in parts]),
                reason_probs=None
                if parts[0].reason_probs is None
                else np.concatenate([s.reason_probs for s in parts]),
                prompt_embedding=np.concatenate([s.prompt_embedding for s in parts]),
                response_embedding=np.concatenate([s.response_embedding for s in parts]),
                truncated=np.concatenate([s.truncated for s in parts]),
            )
        return self._score(prompts, responses)

    def _score(self, prompts: Sequence[str], responses: Sequence[str]) -> GateScores:
        p = self.prompt_tokenizer.encode_batch(prompts)
        r = self.response_tokenizer.encode_batch(responses)
        feeds = {f"prompt_{k}": v for k, v in p.feeds().items()}
        feeds.update({f"response_{k}": v for k, v in r.feeds().items()})
        feeds[SIGNALS_INPUT] = signals_batch(prompts, responses, self.signals_version)
        values = self.session.run(self._outputs, feeds)
        return GateScores(
            p_acceptable=np.asarray(values[0])[:, 1].astype(np.float64),
            reason_probs=np.asarray(values[3]) if self.reason_output is not None else None,
            prompt_embedding=np.asarray(values[1]),
            response_embedding=np.asarray(values[2]),
            truncated=r.truncated,
        )

    def p_acceptable(self, prompt: str, response: str) -> float:
        """P(acceptable) for one pair, model only (no checks): the router's `LearnedGateFn`.
        Compare it with `self.threshold` (calibrated for the bundle's target false-accept rate)."""
        return float(self.score([prompt], [response]).p_acceptable[0])

    def _learned_reason(self, probs: np.ndarray | None) -> tuple[list[str], dict[str, float] | None]:
        """The most likely bad reason; `refusal` only when P(refusal) >= the bundle's
        `thresholds.reason_refusal` (chosen on hand labels at training time), else the next one."""
        if probs is None or self.reason_labels is None:
            return ["low_p_acceptable"], None
        as_dict = {lab: float(v) for lab, v in zip(self.reason_labels, probs, strict=True)}
        bad = sorted(((v, lab) for lab, v in as_dict.items() if lab != "ok"), reverse=True)
        if bad and bad[0][1] == "refusal" and bad[0][0] < self.refusal_min:
            bad = bad[1:]
        return ([bad[0][1]] if bad else ["low_p_acceptable"]), as_dict

    def decide(self, items: Sequence[GateItem], threshold: float | None = None) -> list[GateDecision]:
        """Checks first (failures short-circuit), then one model call for the rest; input order kept."""
        t = self.threshold if threshold is None else float(threshold)
        decisions: list[GateDecision | None] = []
        todo: list[int] = []
        for i, item in enumerate(items):
            reasons = run_checks(item)
            if reasons:
                decisions.append(GateDecision(False, None, reasons, "checks"))
            else:
                decisions.append(None)
                todo.append(i)
        if todo:
            scores = self.score([items[i].prompt for i in todo], [items[i].response for i in todo])
            for k, i in enumerate(todo):
                p = float(scores.p_acceptable[k])
                probs = scores.reason_probs[k] if scores.reason_probs is not None else None
                if p >= t:
                    decisions[i] = GateDecision(True, p, [], "model")
                else:
                    reasons, rp = self._learned_reason(probs)
                    decisions[i] = GateDecision(False, p, reasons, "model", rp)
        return [d for d in decisions if d is not None]

    def expected_outputs(self) -> dict[str, Any]:
        """The manifest's `self_check` block for this gate as it is now (written at build time)."""
        prompts = [p for p, _ in SELF_CHECK_PAIRS]
        responses = [r for _, r in SELF_CHECK_PAIRS]
        s = self.score(prompts, responses)
        cases: list[dict[str, Any]] = []
        for k, (prompt, response) in enumerate(SELF_CHECK_PAIRS):
            case: dict[str, Any] = {"prompt": prompt, "response": response}
            case["p_acceptable"] = float(s.p_acceptable[k])
            if s.reason_probs is not None and self.reason_labels is not None:
                case["reason_probs"] = {
                    lab: float(v) for lab, v in zip(self.reason_labels, s.reason_probs[k], strict=True)
                }
            cases.append(case)
        precision = str(self.manifest.get("encoder", {}).get("precision", "fp32"))
        return {"atol": SELF_CHECK_ATOL.get(precision, SELF_CHECK_ATOL["int8"]), "cases": cases}

    def _check_expected(self) -> None:
        try:
            check = self.manifest["self_check"]
            atol = float(check["atol"])
            cases = [c for c in check["cases"] if isinstance(c, dict)]
            got = self.score([str(c["prompt"]) for c in cases], [str(c["response"]) for c in cases])
            expected_p = [float(c["p_acceptable"]) for c in cases]
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{self.path}: malformed 'self_check' in the manifest ({exc})") from exc
        for k, case in enumerate(cases):
            problem = None
            if not abs(float(got.p_acceptable[k]) - expected_p[k]) <= atol:
                problem = f"p_acceptable {float(got.p_acceptable[k]):.4f}, recorded {expected_p[k]:.4f}"
            recorded = case.get("reason_probs")
            if problem is None and (recorded is None) != (got.reason_probs is None):
                problem = "the reason head does not match the recorded one"
            if problem is None and recorded is not None and got.reason_probs is not None:
                now = dict(zip(self.reason_labels or (), map(float, got.reason_probs[k]), strict=True))
                if not isinstance(recorded, dict) or set(recorded) != set(now):
                    problem = f"reason labels {sorted(now)} differ from the recorded ones"
                elif max(abs(now[lab] - float(v)) for lab, v in recorded.items()) > atol:
                    problem = "reason probabilities differ from the recorded ones"
            if problem is not None:
                raise BundleError(
                    f"gate self-check case {k}: {problem}; the manifest does not describe this graph "
                    "(labels reordered or edited, or another model.onnx): refusing it"
                )

    def self_check(self) -> None:
        """Known inputs -> the outputs recorded at build time (within `atol`), finite probabilities in
        [0, 1] and normalised embeddings; raises BundleError."""
        self._check_expected()
        prompts = [p for p, _ in SELF_CHECK_PAIRS]
        responses = [r for _, r in SELF_CHECK_PAIRS]
        s = self.score(prompts, responses)
        if s.p_acceptable.shape != (len(prompts),) or not np.all(np.isfinite(s.p_acceptable)):
            raise BundleError("gate self-check: p_acceptable has the wrong shape or is not finite")
        if np.any(s.p_acceptable < 0) or np.any(s.p_acceptable > 1):
            raise BundleError("gate self-check: p_acceptable outside [0, 1]")
        if s.reason_probs is not None and not np.allclose(s.reason_probs.sum(axis=1), 1.0, atol=1e-3):
            raise BundleError("gate self-check: reason probabilities do not sum to 1")
        for emb in (s.prompt_embedding, s.response_embedding):
            if not np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3):
                raise BundleError("gate self-check: embeddings are not L2-normalised")


__all__ = [
    "GATE_KIND",
    "GateDecision",
    "GateItem",
    "GateModel",
    "GateScores",
    "InvalidSchemaError",
    "decide_without_model",
]
