"""HTTP load generation for `tierroute bench http`: wrk when installed, Python processes otherwise.

Job: closed-loop load (C connections, each sending its next request when the previous answer
arrives) against POST /v1/classify with ~64-token texts, reporting requests/s and p50/p99 latency
per concurrency level and per server.

Trade-offs:
- wrk is a separate C process with an epoll loop: on a 2-core box it takes little CPU from the
  server. The Python fallback runs in separate processes too (never in the server's), but pays for
  HTTP parsing in Python, so its throughput figures are lower bounds; the table says which tool ran.
- Closed-loop load understates tail latency under overload (coordinated omission); at the levels
  measured here the server keeps up, and p99 is reported as measured.
- Wall-clock figures move 20-30% with whatever else runs on a small shared box, so the table also
  gives the server's own CPU time per request (`process_cpu_seconds_total` from its /metrics,
  read before and after each level): it barely depends on other load, and `cores / CPU per
  request` is the throughput ceiling of a dedicated machine.
- Comparing servers on a shared box: with several `--url`s the servers take turns at each level and
  swap order every round (`--rounds`), so a change is timed next to its baseline; the second table
  gives medians over the rounds and ratios to the first URL, and every row carries the load average.
- Stdlib only: importing this module must stay cheap for `tierroute --help`.
"""

from __future__ import annotations

import http.client
import json
import math
import multiprocessing
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# ~64 tokens each with the MiniLM tokenizer (checked against the server's `tokens` field at run time).
TEXTS: tuple[str, ...] = (
    "I am planning a three day trip to Lisbon in early spring with my parents, who do not walk much. "
    "Could you suggest a relaxed itinerary with short distances, good seafood restaurants, and one day trip "
    "outside the city that is easy by train? We would also like a quiet hotel near a tram line.",
    "Write a Python function that takes a list of log lines in the format 'timestamp level message', "
    "groups them by level, counts how many errors happened in each hour, and returns the busiest hour. "
    "Please include type hints, a short docstring and two unit tests written with pytest.",
    "Our quarterly report says revenue grew eight percent while operating costs rose twelve percent. "
    "Summarise what this means for profit margins in two sentences, and list three questions the board "
    "should ask the finance team before approving next year's budget, the new hiring plan "
    "and the size of the annual bonus pool for the sales team.",
    "A farmer has a rectangular field whose length is three times its width. If the perimeter is "
    "four hundred metres, what is the area of the field? Explain each step of the calculation so that a "
    "student in middle school can follow along, and then check the answer in a second, independent way "
    "using a sketch.",
    "Extract the names of all companies, the dates, and the amounts of money mentioned in the following "
    "paragraph and return them as JSON: On March 3rd, Acme Corp agreed to buy Beta Ltd for 40 million "
    "dollars, closing in June, after Gamma Inc dropped its rival offer of 35 million in May.",
    "Classify the sentiment of this customer review as positive, negative or mixed, and give a one line "
    "reason: The delivery was two days late and the box was damaged, but the headphones sound amazing, "
    "the battery lasts all week, and support replaced the broken "
    "charging cable within a single day without asking for a receipt.",
    "Explain the difference between a process and a thread in an operating system, including how memory "
    "is shared, what happens when one of them crashes, and when you would prefer one over the other "
    "in a web server that handles thousands of slow "
    "network connections at the same time on a small machine with four cores.",
    "Draft a polite email to a landlord asking for the heating to be repaired before the weekend. Mention "
    "that it has been broken for five days, that there is a small child in the flat, and ask for a date "
    "and time for the visit. Keep it under one hundred and fifty words and friendly in tone.",
)


class BenchError(Exception):
    """The target cannot be benchmarked (unreachable, not ready, errors on a probe request)."""


@dataclass
class LevelResult:
    server: str
    tool: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float = math.nan
    round: int = 1
    load: float = math.nan  # 1-minute load average of the machine right after the level

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def bodies(texts_per_request: int) -> list[bytes]:
    """Request bodies cycling through TEXTS."""
    out = []
    for i in range(len(TEXTS)):
        texts = [TEXTS[(i + j) % len(TEXTS)] for j in range(texts_per_request)]
        out.append(json.dumps({"texts": texts}).encode())
    return out


def _headers(api_key: str | None) -> dict[str, str]:
    h = {"Content-Type": "application/json"}
    if api_key:
        h["Authorization"] = f"Bearer {api_key}"
    return h


def probe(url: str, api_key: str | None) -> tuple[str, float]:
    """Label the server by its serving config (from /readyz) and check a classify call works."""
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as resp:
            ready = json.loads(resp.read())
        req = urllib.request.Request(
            f"{url}/v1/classify", data=json.dumps({"texts": list(TEXTS)}).encode(), headers=_headers(api_key)
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            out = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BenchError(f"{url}: not ready for a benchmark ({exc})") from exc
    tokens = sum(r["tokens"] for r in out["results"]) / len(out["results"])
    s = ready.get("serving") or {}
    if s.get("batching"):
        label = f"batching (max {s.get('max_batch')}, wait {s.get('batch_wait_ms', 0):g} ms)"
    else:
        label = "no batching"
    label += f", {s.get('workers', '?')} workers x {s.get('threads', '?')} threads"
    return label, tokens


def server_cpu_seconds(url: str) -> float:
    """The server process's CPU seconds so far (NaN when its /metrics does not say)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return math.nan
    for line in text.splitlines():
        if line.startswith("process_cpu_seconds_total "):
            return float(line.split()[1])
    return math.nan


def _wrk_script(path: Path, payloads: Sequence[bytes], api_key: str | None) -> None:
    lua_bodies = ",\n".join("[==[" + b.decode() + "]==]" for b in payloads)
    auth = f'wrk.headers["Authorization"] = "Bearer {api_key}"\n' if api_key else ""
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"{auth}"
        f"local bodies = {{\n{lua_bodies}\n}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #bodies + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[i])\n"
        "end\n"
        "done = function(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        '  io.write(string.format("TIERROUTE %d %d %d %d %d\\n", summary.requests, summary.duration,\n'
        "    e.status + e.connect + e.read + e.write + e.timeout,\n"
        "    latency:percentile(50), latency:percentile(99)))\n"
        "end\n",
        encoding="utf-8",
    )


def run_wrk(
    url: str, concurrency: int, duration: float, script: Path
) -> tuple[int, int, float, float, float]:
    """(requests, errors, seconds, p50 ms, p99 ms) from one wrk run."""
    threads = min(concurrency, 2)
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"{url}/v1/classify",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("TIERROUTE "):
            n, dur_us, errors, p50_us, p99_us = (int(float(x)) for x in line.split()[1:6])
            return n, errors, dur_us / 1e6, p50_us / 1000.0, p99_us / 1000.0
    raise BenchError(f"wrk failed: {out.stderr.strip() or out.stdout.strip()}")


def _py_connection_loop(
    host: str,
    port: int,
    payloads: Sequence[bytes],
    headers: dict[str, str],
    stop_at: float,
    out: list[float],
    errs: list[int],
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    i = 0
    while True:
        start = time.perf_counter()
        if start >= stop_at:
            break
        try:
            conn.request("POST", "/v1/classify", body=payloads[i % len(payloads)], headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                errs[0] += 1
            else:
                out.append(time.perf_counter() - start)
        except (OSError, http.client.HTTPException):
            errs[0] += 1
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=10)
        i += 1
    conn.close()


def _py_process(
    url: str, connections: int, payloads: list[bytes], headers: dict[str, str], duration: float
) -> tuple[list[float], int]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stop_at = time.perf_counter() + duration
    lat: list[list[float]] = [[] for _ in range(connections)]
    errs: list[list[int]] = [[0] for _ in range(connections)]
    threads = [
        threading.Thread(
            target=_py_connection_loop, args=(host, port, payloads, headers, stop_at, lat[i], errs[i])
        )
        for i in range(connections)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for part in lat for x in part], sum(e[0] for e in errs)


def run_python(
    url: str, concurrency: int, duration: float, payloads: list[bytes], api_key: str | None
) -> tuple[int, int, float, float, float]:
    procs = min(concurrency, 4)
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    ctx = multiprocessing.get_context("spawn")
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=procs, mp_context=ctx) as pool:
        futures = [pool.submit(_py_process, url, n, payloads, _headers(api_key), duration) for n in shares]
        results = [f.result() for f in futures]
    seconds = min(duration, time.perf_counter() - start)
    lat = sorted(x for part, _ in results for x in part)
    errors = sum(e for _, e in results)
    return len(lat), errors, seconds, percentile(lat, 50) * 1000, percentile(lat, 99) * 1000


def percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def run_benchmark(
    urls: Sequence[str],
    levels: Sequence[int],
    *,
    duration: float,
    warmup: float,
    texts_per_request: int,
    tool: str,
    api_key: str | None,
    echo: Callable[[str], Any],
    rounds: int = 1,
) -> list[LevelResult]:
    """Every level on every server, `rounds` times; the servers take turns within each level and swap
    order every round, so each is measured next to the others in time (a shared box drifts)."""
    use = tool
    if tool == "auto":
        use = "wrk" if shutil.which("wrk") else "python"
    elif tool == "wrk" and not shutil.which("wrk"):
        raise BenchError("wrk is not installed (apt-get install wrk) - or use --tool python")
    payloads = bodies(texts_per_request)
    rows: list[LevelResult] = []
    targets: list[tuple[str, str]] = []
    for raw in urls:
        url = raw.rstrip("/")
        label, tokens = probe(url, api_key)
        echo(f"{url}: {label}; {tokens:.0f} tokens per text; load from {use}")
        targets.append((url, f"{label} @ {urlsplit(url).netloc}"))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "classify.lua"
        _wrk_script(script, payloads, api_key)
        for r in range(rounds):
            order = targets if r % 2 == 0 else targets[::-1]
            for c in levels:
                for url, label in order:
                    if use == "wrk":
                        if warmup > 0:
                            run_wrk(url, c, warmup, script)
                        cpu0 = server_cpu_seconds(url)
                        n, errors, secs, p50, p99 = run_wrk(url, c, duration, script)
                    else:
                        if warmup > 0:
                            run_python(url, c, warmup, payloads, api_key)
                        cpu0 = server_cpu_seconds(url)
                        n, errors, secs, p50, p99 = run_python(url, c, duration, payloads, api_key)
                    cpu = (server_cpu_seconds(url) - cpu0) * 1000 / n if n else math.nan
                    load = os.getloadavg()[0]
                    row = LevelResult(label, use, c, n, errors, secs, p50, p99, cpu, r + 1, load)
                    echo(
                        f"  round {r + 1} {url} c={c}: {row.rps:.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} "
                        f"ms, server CPU {cpu:.1f} ms/request, errors {errors}, load average {load:.2f}"
                    )
                    rows.append(row)
    return rows


def format_table(rows: Sequence[LevelResult]) -> str:
    lines = [
        "| server | concurrency | req/s | p50 ms | p99 ms | server CPU ms/req | errors | load | round "
        "| load average |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.server} | {r.concurrency} | {r.rps:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.cpu_ms_per_request:.1f} | {r.errors} | {r.tool} | {r.round} | {r.load:.2f} |"
        )
    return "\n".join(lines)


def format_ratios(rows: Sequence[LevelResult]) -> str:
    """Per server and level: median req/s and p99 over the rounds, mean server CPU per request, and
    req/s and CPU as ratios to the FIRST server given (the baseline), measured in the same run."""
    groups: dict[tuple[str, int], list[LevelResult]] = {}
    for r in rows:
        groups.setdefault((r.server, r.concurrency), []).append(r)
    base = rows[0].server if rows else ""
    lines = [
        f"| server | concurrency | rounds | req/s (median) | p99 ms (median) | server CPU ms/req (mean) "
        f"| req/s vs {base.split(' @ ')[-1]} | CPU/req vs {base.split(' @ ')[-1]} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (server, c), group in groups.items():
        rps = statistics.median(g.rps for g in group)
        p99 = statistics.median(g.p99_ms for g in group)
        cpu = statistics.fmean(g.cpu_ms_per_request for g in group)
        ref = groups.get((base, c), group)
        ref_rps = statistics.median(g.rps for g in ref)
        ref_cpu = statistics.fmean(g.cpu_ms_per_request for g in ref)
        rps_ratio = rps / ref_rps if ref_rps else math.nan
        cpu_ratio = cpu / ref_cpu if ref_cpu else math.nan
        lines.append(
            f"| {server} | {c} | {len(group)} | {rps:.0f} | {p99:.1f} | {cpu:.2f} "
            f"| x{rps_ratio:.2f} | x{cpu_ratio:.2f} |"
        )
    return "\n".join(lines)
