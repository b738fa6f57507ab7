"""The dance service, for real: `python -m kpop_helpers.serve` on a free localhost port (no mocks), its client,
its limits (validation, 429, 504, disconnects, API key, body size), graceful shutdown, /metrics, and no torch.

The tiny fp32 export with one ONNX Runtime thread on both sides, so a served dance equals EdgeGenerator's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from kpop_helpers.data.bvh import forward_kinematics, parse_bvh  # noqa: E402
from kpop_helpers.edge import EdgeGenerator  # noqa: E402
from kpop_helpers.errors import DataError  # noqa: E402
from kpop_helpers.motion.skeleton import T2M_JOINT_NAMES  # noqa: E402
from kpop_helpers.serve.client import DanceClient, ServeError  # noqa: E402
from kpop_helpers.serve.load import check_url, parse_mix, run_load  # noqa: E402
from kpop_helpers.serve.metrics import value_of  # noqa: E402
from kpop_helpers.serve.process import free_port, running_server, start_server  # noqa: E402
from kpop_helpers.serve.report import write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY = "test-key-0123"
PROMPT = "a powerful hip-hop dance with big arm waves"
QUICK = {"seconds": 2.0, "steps": 5, "seed": 7}  # 40 frames, 5 steps: a few tens of ms
SLOW = {"seconds": 600.0, "steps": 50}  # far longer than any timeout below; cancelled, never finished


def wait_until(condition: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def export_dir(tiny_export) -> Path:
    return tiny_export[1]


@pytest.fixture(scope="module")
def server(export_dir, tmp_path_factory):
    """The main server: one worker, a queue of one, a 4 s request timeout, the API key from the environment."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with running_server(export_dir, variant="fp32", log_path=log, env={"KPOP_SERVE_API_KEY": KEY},
                        args=["--workers", "1", "--queue", "1", "--threads", "1", "--timeout", "4"]) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with DanceClient(server.url, KEY) as dancer:
        yield dancer


@pytest.fixture(scope="module")
def edge(export_dir) -> EdgeGenerator:
    return EdgeGenerator(export_dir, variant="fp32", threads=1)


def test_round_trip_equals_the_edge_generator(client, edge, tmp_path):
    expected = edge.generate(PROMPT, **QUICK)[0]
    assert np.array_equal(client.dance(PROMPT, **QUICK), expected)  # JSON floats carry float32 exactly
    assert np.array_equal(client.dance(PROMPT, **QUICK, format="npz"), expected)
    answer = client.dance_answer(PROMPT, **QUICK, format="bvh")
    (tmp_path / "served.bvh").write_bytes(answer.body)
    bvh = parse_bvh(tmp_path / "served.bvh")  # the random tiny model's bodies are not human-sized: no read_bvh
    points = forward_kinematics(bvh.skeleton, bvh.values)[:, [bvh.skeleton.names.index(n) for n in T2M_JOINT_NAMES]]
    np.testing.assert_allclose(points, expected, atol=1e-5)
    timeline = [(0.0, 6.0, PROMPT), (6.0, 12.0, "a cute aegyo dance with small bounces")]  # two windows
    assert np.array_equal(client.dance(timeline=timeline, steps=5, seed=3),
                          edge.generate(timeline=timeline, steps=5, seed=3)[0])
    by_accept = client.request("POST", "/v1/dances", json={"prompt": PROMPT, **QUICK},
                               headers={"accept": "application/x-bvh"})
    assert by_accept.content == answer.body and by_accept.headers["content-type"] == "application/x-bvh"
    meta = client.dance_answer(PROMPT, **QUICK).meta
    assert meta["frames"] == 40 and meta["steps"] == 5 and meta["variant"] == "fp32" and meta["seed"] == 7


BAD_BODIES = [
    ({"prompt": "x", "seconds": 700}, "seconds"), ({"prompt": "x", "seconds": 0.5}, "seconds"),
    ({"prompt": "x", "steps": 51}, "steps"), ({"prompt": "x", "steps": 1}, "steps"),
    ({"prompt": "x", "sampler": "ddim10", "steps": 12}, "steps"), ({"prompt": "x", "sampler": "euler"}, "sampler"),
    ({"prompt": "x", "guidance": 25}, "guidance"), ({"prompt": "x", "guidance": -1}, "guidance"),
    ({"prompt": "x", "eta": 2}, "eta"), ({"prompt": "x", "seed": -1}, "seed"),
    ({"prompt": "x", "format": "gif"}, "format"), ({"prompt": ""}, "prompt"), ({"prompt": "x" * 501}, "prompt"),
    ({"prompt": "   "}, "prompt"), ({}, "prompt"), ({"prompt": "x", "frames": 100}, "frames"),
    ({"prompt": "x", "timeline": [{"start": 0, "end": 1, "prompt": "y"}]}, "prompt"),
    ({"timeline": [{"start": 0, "end": 2, "prompt": "a"}, {"start": 1, "end": 3, "prompt": "b"}]}, "timeline[1]"),
    ({"timeline": [{"start": 0, "end": 700, "prompt": "a"}]}, "timeline[0].end"),
    ({"timeline": [{"start": 0, "end": 2}]}, "timeline[0].prompt"), ({"timeline": []}, "timeline"),
    ({"prompt": "x", "seconds": "long"}, "seconds"), ([1, 2], "body"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES, ids=[f for _, f in BAD_BODIES])
def test_every_validation_error_names_its_field(client, body, field):
    with pytest.raises(ServeError) as caught:
        client.request("POST", "/v1/dances", json=body)
    error = caught.value
    assert error.status == 422, error.body
    assert error.fields[0] == field, error.body
    assert error.body["error"].startswith(f"{field}:"), error.body


def test_bad_transport_is_a_4xx_naming_the_field(client):
    cases = [({"content": b"{bad", "headers": {"content-type": "application/json"}}, 422, "body"),
             ({"content": b"{}", "headers": {"content-type": "text/plain"}}, 415, "Content-Type"),
             ({"json": {"prompt": "x" * 300_000}}, 413, "body"),  # over the 256 KiB body limit
             ({"content": iter([b"{" + b" " * 200_000, b" " * 100_000 + b"}"]),  # chunked: no Content-Length
               "headers": {"content-type": "application/json"}}, 413, "body"),
             ({"json": {"prompt": "x"}, "headers": {"accept": "image/gif"}}, 406, "Accept")]
    for kwargs, status, field in cases:
        with pytest.raises(ServeError) as caught:
            client.request("POST", "/v1/dances", **kwargs)
        assert (caught.value.status, caught.value.fields) == (status, [field]), caught.value.body
    assert client.dance_answer(PROMPT, **QUICK).joints.shape == (40, 22, 3)  # the server is still fine


def test_api_key_is_enforced(server, client):
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"  # the probe stays open
    assert "/v1/dances" in httpx.get(f"{server.url}/openapi.json").json()["paths"]  # and the API's description
    for headers in ({}, {"X-API-Key": "wrong"}):
        for method, path in (("GET", "/v1/info"), ("GET", "/metrics"), ("POST", "/v1/dances")):
            answer = httpx.request(method, f"{server.url}{path}", headers=headers, json={"prompt": "x"})
            assert answer.status_code == 401 and answer.json()["fields"] == ["X-API-Key"], (path, answer.text)
    assert client.info()["variant"] == "fp32"


def test_full_queue_timeout_and_disconnect_leave_no_job(server, client):
    """A runs past the 4 s timeout (504, cancelled mid-run); B waits and its client leaves (dropped); C gets 429."""
    before = client.metrics()
    started = value_of(before, "kpop_jobs_started")
    results: dict[str, object] = {}

    def slow() -> None:
        try:
            results["A"] = client.dance(PROMPT, **SLOW)
        except ServeError as exc:
            results["A"] = exc

    a = threading.Thread(target=slow)
    a.start()
    wait_until(lambda: value_of(client.metrics(), "kpop_jobs_running") == 1, what="A running")

    def leaving() -> None:
        try:
            httpx.post(f"{server.url}/v1/dances", json={"prompt": "b", **QUICK}, headers={"X-API-Key": KEY},
                       timeout=1.0)
        except httpx.TimeoutException:
            results["B"] = "left"

    b = threading.Thread(target=leaving)
    b.start()
    wait_until(lambda: value_of(client.metrics(), "kpop_queue_pending") == 1, what="B waiting")
    with pytest.raises(ServeError) as full:
        client.dance(PROMPT, **QUICK)
    assert full.value.status == 429 and full.value.fields == ["queue"]
    assert full.value.retry_after_s is not None and full.value.retry_after_s >= 1
    b.join()
    assert results["B"] == "left"
    wait_until(lambda: value_of(client.metrics(), "kpop_queue_pending") == 0, 5.0, "B dropped")
    a.join(30)
    assert isinstance(results["A"], ServeError) and results["A"].status == 504, results["A"]
    wait_until(lambda: value_of(client.metrics(), "kpop_jobs_running") == 0, 10.0, "A cancelled")
    after = client.metrics()
    assert value_of(after, "kpop_jobs_started") == started + 1  # B never ran
    for outcome in ("timeout", "disconnected", "rejected"):
        assert value_of(after, "kpop_jobs_total", outcome=outcome) == value_of(before, "kpop_jobs_total",
                                                                               outcome=outcome) + 1, outcome
    assert client.dance(PROMPT, **QUICK).shape == (40, 22, 3)  # and the worker is free again


SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)'
                    r'(?P<labels>\{[a-zA-Z_]\w*="[^"]*"(?:,[a-zA-Z_]\w*="[^"]*")*\})?'
                    r" (?P<value>-?[0-9.e+-]+|NaN|[+-]Inf)$")


def test_metrics_parse(server, client):
    client.dance(PROMPT, **QUICK)
    text = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": KEY}).text
    types, buckets = {}, {}
    for line in text.splitlines():  # an independent reading of the text format
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, line
            family = re.sub(r"_(bucket|sum|count)$", "", match["name"])
            assert family in types or match["name"] in types, line
            if match["name"].endswith("_bucket"):
                series = re.sub(r',?le="[^"]*"', "", match["labels"])
                buckets.setdefault((family, series), []).append(float(match["value"]))
    assert types["kpop_request_duration_seconds"] == "histogram" and types["kpop_requests_total"] == "counter"
    for counts in buckets.values():
        assert counts == sorted(counts)  # cumulative
    samples = client.metrics()
    dances = value_of(samples, "kpop_requests_total", route="/v1/dances", status="200")
    assert dances >= 1
    assert value_of(samples, "kpop_request_duration_seconds_count", route="/v1/dances") >= dances
    assert value_of(samples, "process_resident_memory_bytes") > 10 * 2**20
    assert value_of(samples, "kpop_queue_capacity") == 1


def test_load_generator_and_report(server, tmp_path):
    result = run_load(server.url, [1], 1.0, parse_mix("short=2,bvh=1"), api_key=KEY, request={"steps": 3})
    row = result["rows"][0]
    assert row["ok"] >= 1 and row["http_5xx"] == 0 and row["latency_p50_s"] > 0 and row["rss_mib_peak"] > 10
    paths = write_report({"fp32": result}, tmp_path, name="load")
    assert [p.name for p in paths] == ["load.json", "load.md", "load.png"] and all(p.stat().st_size for p in paths)
    with pytest.raises(DataError, match="--url"):
        check_url("http://example.com:8000")
    with pytest.raises(DataError, match="--mix"):
        parse_mix("window=1,song=2")


def _signal_during(server, requests: dict[str, dict], wait_for: Callable[[DanceClient], bool]) -> dict[str, object]:
    """Send `requests` one after the other, SIGTERM once `wait_for(client)`, and return each request's outcome."""
    results: dict[str, object] = {}

    def send(name: str, body: dict) -> None:
        try:
            results[name] = DanceClient(server.url).dance_answer(PROMPT, **body)
        except ServeError as exc:
            results[name] = exc

    threads = []
    with DanceClient(server.url) as probe:
        for i, (name, body) in enumerate(requests.items()):
            threads.append(threading.Thread(target=send, args=(name, body)))
            threads[-1].start()
            wait_until(lambda count=i + 1: value_of(probe.metrics(), "kpop_jobs_started") + value_of(
                probe.metrics(), "kpop_queue_pending") >= count, what=f"{name} queued")
        wait_until(lambda: wait_for(probe), what="the jobs in place")
    server.stop()
    for thread in threads:
        thread.join(30)
    return results


def test_shutdown_finishes_the_running_job_and_drops_the_waiting_one(export_dir, tmp_path):
    server = start_server(export_dir, variant="fp32", log_path=tmp_path / "server.log",
                          args=["--threads", "1", "--queue", "2", "--grace", "60"])
    results = _signal_during(server, {"A": {"seconds": 30.0, "steps": 50}, "B": QUICK},
                             lambda c: value_of(c.metrics(), "kpop_queue_pending") == 1)
    assert server.process.poll() is not None
    assert results["A"].joints.shape == (600, 22, 3)
    assert isinstance(results["B"], ServeError) and results["B"].status == 503
    dropped = re.search(r"job (\w+) was cancelled", str(results["B"])).group(1)
    assert f"finished running jobs ['{results['A'].meta['id']}']" in server.log(), server.log()
    assert f"dropped waiting jobs ['{dropped}']" in server.log()


def test_shutdown_cancels_a_running_job_past_the_grace(export_dir, tmp_path):
    server = start_server(export_dir, variant="fp32", log_path=tmp_path / "server.log",
                          args=["--threads", "1", "--grace", "0.2"])
    results = _signal_during(server, {"A": SLOW}, lambda c: value_of(c.metrics(), "kpop_jobs_running") == 1)
    assert isinstance(results["A"], ServeError) and results["A"].status == 503, results["A"]
    job = re.search(r"job (\w+) was cancelled", str(results["A"])).group(1)
    assert f"cancelled running jobs ['{job}']" in server.log(), server.log()
    assert server.process.poll() is not None


def test_serving_imports_no_torch(export_dir):
    """A fresh interpreter: import the app, serve with uvicorn in a thread, dance through the client."""
    script = textwrap.dedent(f"""
        import json, sys, threading, time
        import uvicorn
        from kpop_helpers.serve import DanceClient, ServeSettings, create_app
        app = create_app(ServeSettings(export_dir={str(export_dir)!r}, variant="fp32", threads=1))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port={free_port()}, log_level="warning"))
        thread = threading.Thread(target=server.run)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = "http://127.0.0.1:{{}}".format(server.config.port)
        shape = DanceClient(url).dance("a dance", seconds=1, steps=3).shape
        server.should_exit = True
        thread.join()
        print(json.dumps({{"torch": "torch" in sys.modules, "shape": list(shape)}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"torch": False, "shape": [20, 22, 3]}


def test_bad_arguments_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kpop_helpers.serve", "--export-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2 and "manifest.json" in done.stderr


def test_serving_benchmark_smoke(export_dir, tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_serving.py"), "--export-dir",
                           str(export_dir), "--variants", "fp32", "student", "--clients", "1", "--seconds", "1",
                           "--steps", "3", "--threads", "1", "--mix", "short", "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "serving.json").read_text())
    assert result["skipped"] == ["student"] and result["results"]["fp32"]["rows"][0]["ok"] >= 1
    assert "| fp32 | 1 |" in (tmp_path / "serving.md").read_text() and (tmp_path / "serving.png").stat().st_size
