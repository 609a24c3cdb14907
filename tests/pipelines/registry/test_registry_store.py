"""log_and_register / promote / list / resolve / download_bundle on a real embedded sqlite store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipelines import registry
from pipelines.registry import (
    ComparisonRow,
    PromotionContext,
    RegistryError,
    download_bundle,
    list_versions,
    log_and_register,
    promote,
    resolve,
)

NAME = "tierroute-classifier"


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri, uri)


def test_log_and_register_on_a_fresh_store(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any], tmp_path: Path
) -> None:
    reg = log_and_register(make_record(), tiny_bundle)
    assert (reg.name, reg.version, reg.model_uri) == (NAME, 1, f"models:/{NAME}/1")

    c = _client(tracking_uri)
    mv = c.get_model_version_by_alias(NAME, "candidate")
    assert int(mv.version) == 1 and mv.run_id == reg.run_id
    assert mv.tags["metric.test_tier_macro_f1"] == "0.8"
    assert mv.tags["metric.test_tier_ece"] == "0.04"
    assert "metric.test_tier_simple_f1" not in mv.tags  # per-class metrics stay on the run
    assert mv.tags["bundle_digest"] == registry.bundle_digest(tiny_bundle)
    assert mv.tags["dataset_digest"] == "d1g3st"

    run = c.get_run(reg.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["max_tokens"] == "128"
    assert run.data.params["heads"] == "tier,task"
    assert run.data.params["spec.strategy"] == "head_tail"
    assert run.data.metrics["test_tier_simple_f1"] == pytest.approx(0.9)
    assert run.data.tags["purpose"] == "test"
    (ds_input,) = run.inputs.dataset_inputs
    assert ds_input.dataset.name == "unit.parquet" and ds_input.dataset.digest == "d1g3st"
    assert {t.key: t.value for t in ds_input.tags}["mlflow.data.context"] == "training"
    logged = {a.path for a in c.list_artifacts(reg.run_id, "plots")} | {
        a.path for a in c.list_artifacts(reg.run_id, "reports")
    }
    assert logged == {"plots/confusion_tier.png", "reports/report.json"}

    # artifacts live next to the sqlite file, not in "./mlruns" of whatever the cwd was
    stored = list((tmp_path / "artifacts").rglob("bundle.json"))
    assert len(stored) == 1 and not (tmp_path / "mlruns").exists()
    assert json.loads(stored[0].read_text())["name"] == "tiny-test-bundle"


def test_new_version_moves_candidate_only(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(), tiny_bundle)
    promote(NAME)
    second = log_and_register(make_record(tier_f1=0.9), tiny_bundle)
    assert second.version == 2
    assert resolve(f"models:/{NAME}@candidate").version == 2
    assert resolve(f"models:/{NAME}@champion").version == 1


def test_failure_after_run_start_marks_failed_and_leaves_no_version(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    log_and_register(make_record(), tiny_bundle)  # v1 is fine
    real = MlflowClient.set_registered_model_alias

    def boom(self: Any, name: str, alias: str, version: str) -> None:
        raise RuntimeError("registry went away")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", boom)
    with pytest.raises(RegistryError, match=r"marked FAILED\); nothing was registered: registry went away"):
        log_and_register(make_record(tier_f1=0.5), tiny_bundle)
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", real)

    c = _client(tracking_uri)
    assert [int(v.version) for v in c.search_model_versions(f"name='{NAME}'")] == [1]
    assert int(c.get_model_version_by_alias(NAME, "candidate").version) == 1
    runs = c.search_runs(
        [c.get_experiment_by_name("tierroute-test").experiment_id], order_by=["start_time DESC"]
    )
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]


def test_failed_first_registration_removes_the_new_model(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    real = mlflow.register_model

    def created_then_lost(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)  # the version exists, but the caller never learns its number
        raise TimeoutError("connection lost while waiting for the version")

    monkeypatch.setattr(mlflow, "register_model", created_then_lost)
    with pytest.raises(RegistryError, match="connection lost"):
        log_and_register(make_record(), tiny_bundle, model_name="fresh-model")
    c = _client(tracking_uri)
    assert not list(c.search_registered_models(filter_string="name='fresh-model'"))
    assert not list(c.search_model_versions("name='fresh-model'"))


def test_invalid_bundle_is_refused_before_anything_is_logged(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any], tmp_path: Path
) -> None:
    bad = tmp_path / "tampered"
    shutil.copytree(tiny_bundle, bad)
    with (bad / "model.onnx").open("ab") as fh:
        fh.write(b"garbage")
    with pytest.raises(RegistryError, match=r"invalid bundle: .*model\.onnx"):
        log_and_register(make_record(), bad)
    with pytest.raises(RegistryError, match="artifacts to log do not exist"):
        log_and_register(make_record(artifacts=[tmp_path / "missing.png"]), tiny_bundle)
    assert _client(tracking_uri).get_experiment_by_name("tierroute-test") is None


def test_first_promotion_passes_and_is_recorded(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(), tiny_bundle)
    result = promote(NAME)
    assert result.promoted and not result.forced
    assert (result.candidate_version, result.champion_version, result.previous_champion_version) == (
        1,
        1,
        None,
    )
    assert [r.note for r in result.rows] == ["no champion", "no champion"]
    tags = _client(tracking_uri).get_model_version(NAME, "1").tags
    assert tags["promoted_by_force"] == "false" and tags["promoted_from"] == "none"
    assert tags["promoted_at"].endswith("+00:00")
    again = promote(NAME)
    assert again.promoted and "already champion" in again.reason


def test_worse_candidate_is_refused_and_champion_stays(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(tier_f1=0.80), tiny_bundle)
    promote(NAME)
    log_and_register(make_record(tier_f1=0.75), tiny_bundle)
    result = promote(NAME, tolerance=0.01)
    assert not result.promoted
    assert result.champion_version == 1 and result.candidate_version == 2
    row = next(r for r in result.rows if r.metric == "test_tier_macro_f1")
    assert not row.ok and row.delta == pytest.approx(-0.05)
    assert "test_tier_macro_f1" in result.reason
    assert resolve(f"models:/{NAME}@champion").version == 1
    assert "promoted_at" not in _client(tracking_uri).get_model_version(NAME, "2").tags


def test_candidate_within_tolerance_is_promoted(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(tier_f1=0.80, task_f1=0.70), tiny_bundle)
    promote(NAME)
    log_and_register(make_record(tier_f1=0.795, task_f1=0.72), tiny_bundle)
    result = promote(NAME, tolerance=0.01)
    assert result.promoted and result.champion_version == 2 and result.previous_champion_version == 1
    assert all(r.ok for r in result.rows)
    assert _client(tracking_uri).get_model_version(NAME, "2").tags["promoted_from"] == "1"
    strict = log_and_register(make_record(tier_f1=0.79, task_f1=0.72), tiny_bundle)
    assert not promote(NAME, tolerance=0.0).promoted  # 0.795 -> 0.79 with zero tolerance
    assert strict.version == 3


def test_force_promotes_and_records_it(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(tier_f1=0.80), tiny_bundle)
    promote(NAME)
    log_and_register(make_record(tier_f1=0.50), tiny_bundle)
    result = promote(NAME, force=True)
    assert result.promoted and result.forced and "forced" in result.reason
    assert resolve(f"models:/{NAME}@champion").version == 2
    tags = _client(tracking_uri).get_model_version(NAME, "2").tags
    assert tags["promoted_by_force"] == "true"
    recorded = {r["metric"]: r for r in json.loads(tags["promotion_comparison"])}
    assert recorded["test_tier_macro_f1"]["ok"] is False
    assert recorded["test_tier_macro_f1"]["champion"] == pytest.approx(0.8)


def test_extra_checks_can_refuse(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(), tiny_bundle)
    seen: list[PromotionContext] = []

    def slice_check(ctx: PromotionContext) -> list[ComparisonRow]:
        seen.append(ctx)
        return [
            ComparisonRow("slice[source=alpaca].tier_macro_f1", None, 0.4, None, False, "below floor 0.5")
        ]

    def broken_check(ctx: PromotionContext) -> list[ComparisonRow]:
        raise ValueError("eval set unreadable")

    result = promote(NAME, extra_checks=[slice_check])
    assert not result.promoted and "slice[source=alpaca]" in result.reason
    assert seen[0].candidate.version == 1 and seen[0].champion is None and seen[0].tolerance == 0.01
    result = promote(NAME, extra_checks=[broken_check])
    assert (
        not result.promoted
        and "check broken_check" in result.reason
        and "eval set unreadable" in result.reason
    )
    assert promote(NAME, extra_checks=[lambda ctx: []]).promoted


def test_candidate_without_key_metrics_needs_force(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(metrics={"test_tier_accuracy": 0.9}), tiny_bundle)
    result = promote(NAME)
    assert not result.promoted and "none of" in result.reason
    assert promote(NAME, force=True).promoted


def test_list_versions(tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]) -> None:
    log_and_register(make_record(tier_f1=0.80), tiny_bundle)
    promote(NAME)
    log_and_register(make_record(tier_f1=0.85), tiny_bundle)
    versions = list_versions(NAME)
    assert [v.version for v in versions] == [2, 1]
    assert versions[0].aliases == ("candidate",) and versions[1].aliases == ("champion",)
    assert versions[0].metrics["test_tier_macro_f1"] == pytest.approx(0.85)
    assert versions[0].created >= versions[1].created
    with pytest.raises(RegistryError, match="no registered model named 'nope'"):
        list_versions("nope")


def test_metrics_fall_back_to_the_run_when_tags_are_missing(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(tier_f1=0.8), tiny_bundle)
    _client(tracking_uri).delete_model_version_tag(NAME, "1", "metric.test_tier_macro_f1")
    (info,) = list_versions(NAME)
    assert info.metrics["test_tier_macro_f1"] == pytest.approx(0.8)


def test_resolve_errors_name_what_is_missing(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    log_and_register(make_record(), tiny_bundle)
    r = resolve(f"models:/{NAME}/1")
    assert (r.version, r.alias) == (1, None) and r.run_id
    with pytest.raises(RegistryError, match=r"has no alias 'champion' .*aliases: candidate"):
        resolve(f"models:/{NAME}@champion")
    with pytest.raises(RegistryError, match="has no version 7"):
        resolve(f"models:/{NAME}/7")
    with pytest.raises(RegistryError, match="no registered model named 'ghost'"):
        resolve("models:/ghost@champion")
    with pytest.raises(RegistryError, match="no registered model named 'ghost'"):
        promote("ghost")


def test_download_bundle_round_trip(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any], tmp_path: Path
) -> None:
    from serving.model.bundle import Bundle

    log_and_register(make_record(), tiny_bundle)
    out = download_bundle(f"models:/{NAME}@candidate", tmp_path / "exported")
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "model.onnx", "tokenizer.json"]
    assert registry.bundle_digest(out) == registry.bundle_digest(tiny_bundle)
    texts = ["hello", "prove that sqrt(2) is irrational " * 20]
    got = [p.to_result() for p in Bundle.load(out).predict(texts)]
    want = [p.to_result() for p in Bundle.load(tiny_bundle).predict(texts)]
    assert got == want
    # exporting again replaces the bundle; a folder holding something else is refused
    assert download_bundle(f"models:/{NAME}/1", out) == out.resolve()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exported")]  # no staging left
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(RegistryError, match="not a bundle folder"):
        download_bundle(f"models:/{NAME}/1", other)
    assert (other / "keep.txt").read_text() == "mine"


def test_download_detects_modified_stored_artifacts(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any], tmp_path: Path
) -> None:
    log_and_register(make_record(), tiny_bundle)
    (stored,) = (tmp_path / "artifacts").rglob("model.onnx")
    stored.write_bytes(stored.read_bytes()[:-10])  # a truncated upload
    with pytest.raises(RegistryError, match=r"model\.onnx"):
        download_bundle(f"models:/{NAME}/1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unreachable_registry_fails_fast_with_a_clear_error(
    tiny_bundle: Path, make_record: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.ports import free_port

    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for call in (
        lambda: log_and_register(make_record(), tiny_bundle),
        lambda: promote(NAME),
        lambda: list_versions(NAME),
        lambda: resolve(f"models:/{NAME}@champion"),
    ):
        with pytest.raises(RegistryError, match=rf"MLflow tracking server {uri} is unreachable"):
            call()


def test_credentials_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.ports import free_port

    port = free_port()
    with pytest.raises(RegistryError) as info:
        list_versions(NAME, tracking_uri=f"http://alice:s3cret@127.0.0.1:{port}")
    assert "s3cret" not in str(info.value) and f"***@127.0.0.1:{port}" in str(info.value)


def test_serving_and_pipelines_use_one_default_store(
    tiny_bundle: Path,
    make_record: Callable[..., Any],
    _template_store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without MLFLOW_TRACKING_URI both sides resolve `<cwd>/mlruns/mlflow.db`: what `train` registers
    there, `serve` finds there, and serving's download creates no other store (no `./mlflow.db`)."""
    from pipelines.registry import store
    from serving.model.source import RegistrySource

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    expected = f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    source = RegistrySource(
        "models:/tierroute-classifier@candidate", tracking_uri=None, cache_dir=tmp_path / "c"
    )
    assert source.store_uris() == (expected, expected)
    assert registry.default_tracking_uri() == expected

    (tmp_path / "mlruns").mkdir()
    shutil.copyfile(_template_store, tmp_path / "mlruns" / "mlflow.db")
    registered = registry.log_and_register(make_record(), tiny_bundle)
    assert store._connect(None)[2] == expected
    # serving resolves in a fresh process, as `tierroute serve` does (no MLflow state from training)
    script = (
        "import json, pathlib; from serving.model.source import RegistrySource; "
        "r = RegistrySource('models:/tierroute-classifier@candidate', tracking_uri=None, "
        "cache_dir=pathlib.Path('c')).resolve(); print(json.dumps([r.origin, r.version, str(r.path)]))"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") or k == "MLFLOW_DISABLE_TELEMETRY"
    }
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[3])
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    origin, version, path = json.loads(done.stdout.strip().splitlines()[-1])
    assert origin == "registry" and version == str(registered.version)
    assert registry.bundle_digest(Path(path)) == registry.bundle_digest(tiny_bundle)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "confusion_tier.png", "mlruns", "report.json"]
    assert (tmp_path / "mlruns" / "artifacts").is_dir()


def test_worse_held_out_routing_value_is_refused(
    tracking_uri: str, tiny_bundle: Path, make_record: Callable[..., Any]
) -> None:
    """Same macro-F1, but the candidate's mean leave-one-source-out APGR is lower beyond the tolerance."""

    def record(loso: float | None) -> Any:
        rec = make_record(tier_f1=0.80, task_f1=0.70)
        if loso is not None:
            rec.metrics["loso_apgr_mean"] = loso
        return rec

    log_and_register(record(0.56), tiny_bundle)
    promote(NAME)
    log_and_register(record(0.52), tiny_bundle)
    refused = promote(NAME, tolerance=0.01)
    assert not refused.promoted and "loso_apgr_mean" in refused.reason
    row = next(r for r in refused.rows if r.metric == "loso_apgr_mean")
    assert not row.ok and row.delta == pytest.approx(-0.04)
    assert resolve(f"models:/{NAME}@champion").version == 1
    log_and_register(record(0.555), tiny_bundle)  # within the tolerance: promoted
    assert promote(NAME, tolerance=0.01).promoted
    log_and_register(record(None), tiny_bundle)  # no LOSO report (--no-loso): not compared
    result = promote(NAME, tolerance=0.01)
    assert result.promoted and all(r.metric != "loso_apgr_mean" for r in result.rows)
