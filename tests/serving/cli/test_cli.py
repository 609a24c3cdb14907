"""`serve` and `bench http` from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer
from typer.testing import CliRunner

from tests.support.server import REPO, Server, free_port, server_env


def cli(*args: str, cwd: Path = REPO, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving.cli.serve", *args],
        cwd=cwd,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bench_http_loads_a_running_server_from_other_processes(server: Server) -> None:
    proc = cli(
        "bench", "http", "--url", server.url, "--tool", "python", "--duration", "1", "--warmup", "0",
        "--concurrency", "1,4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [
        ln for ln in proc.stdout.splitlines() if ln.startswith("| batching") or ln.startswith("| no batching")
    ]
    assert len(rows) == 2
    for row, concurrency in zip(rows, ("1", "4"), strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == concurrency
        assert float(cells[2]) > 0  # req/s
        assert float(cells[3]) <= float(cells[4])  # p50 <= p99
        assert float(cells[5]) > 0  # server CPU ms per request
        assert cells[6] == "0" and cells[7] == "python"
    assert "tokens per text" in proc.stderr


def test_bench_http_against_nothing_fails_clearly() -> None:
    proc = cli("bench", "http", "--url", f"http://127.0.0.1:{free_port()}", "--duration", "1")
    assert proc.returncode == 1
    assert "not ready for a benchmark" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_rejects_bad_settings_before_loading(tmp_path: Path) -> None:
    proc = cli("serve", "--model", str(tmp_path), "--port", "70000", cwd=tmp_path)
    assert proc.returncode == 2
    assert "invalid settings: port" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("serve", "--model", str(tmp_path), "--policy", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert proc.returncode == 2 and "policy file not found" in proc.stderr


def test_every_command_and_option_has_help() -> None:
    runner = CliRunner()
    for args in (["serve", "--help"], ["bench", "http", "--help"]):
        result = runner.invoke(_app(), args)
        assert result.exit_code == 0, result.output
        assert "--" in result.output
    serve_help = runner.invoke(_app(), ["serve", "--help"]).output
    for option in ("--model", "--port", "--threads", "--batching", "--policy", "--reload-interval"):
        assert option in serve_help
    # the defaults are shown (rich markup used to swallow "[env ...; 8000]" whole)
    flat = " ".join(runner.invoke(_app(), ["serve", "--help"], env={"COLUMNS": "250"}).output.split())
    for shown in ("default 127.0.0.1", "default 8000", "default 2", "TIERROUTE_PORT"):
        assert shown in flat, shown


def _app() -> typer.Typer:
    from serving.cli.serve import register

    app = typer.Typer()
    bench = typer.Typer()
    register(app, bench)
    app.add_typer(bench, name="bench")
    return app


def test_the_start_up_heap_is_frozen_out_of_the_collector() -> None:
    import gc

    from serving.cli.serve import freeze_startup_heap

    gc.unfreeze()
    alive = [[i] for i in range(10)]  # tracked containers alive at freeze time
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(alive)
        assert not any(obj is alive[0] for obj in gc.get_objects())  # the collector no longer walks it
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_bench_http_rounds_alternate_and_give_ratios_to_the_first_server(server: Server) -> None:
    proc = cli(
        "bench", "http", "--url", server.url, "--tool", "python", "--duration", "1", "--warmup", "0",
        "--concurrency", "2", "--rounds", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    port = server.url.rsplit(":", 1)[1]
    rows = [
        ln for ln in proc.stdout.splitlines() if ln.startswith("| batching") or ln.startswith("| no batch")
    ]
    raw, summary = rows[:2], rows[2:]
    assert [row.strip("|").split("|")[8].strip() for row in raw] == ["1", "2"]  # round column
    assert all(float(row.strip("|").split("|")[9]) >= 0 for row in raw)  # load average
    assert all(f"@ 127.0.0.1:{port}" in row for row in rows)
    (line,) = summary
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1] == "2" and cells[2] == "2"  # concurrency, rounds
    assert cells[6] == "x1.00" and cells[7] == "x1.00"  # the baseline against itself


def test_ratio_table_takes_medians_and_divides_by_the_first_server() -> None:
    from serving.cli.loadgen import LevelResult, format_ratios

    def row(server: str, requests: int, cpu: float, rnd: int) -> LevelResult:
        return LevelResult(server, "wrk", 8, requests, 0, 1.0, 1.0, 2.0, cpu, rnd, 1.0)

    rows = [
        row("old @ a:1", 100, 10.0, 1),
        row("new @ a:2", 150, 8.0, 1),
        row("new @ a:2", 250, 6.0, 2),
        row("old @ a:1", 100, 10.0, 2),
    ]
    lines = format_ratios(rows).splitlines()
    assert "vs a:1" in lines[0]
    new = [c.strip() for c in lines[3].strip("|").split("|")]
    assert new[0] == "new @ a:2" and new[3] == "200" and new[5] == "7.00"
    assert new[6] == "x2.00" and new[7] == "x0.70"
