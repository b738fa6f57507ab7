"""A typed client of the dance service (httpx): `DanceClient(url).dance("a hip-hop dance", seconds=10)` -> joints."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from kpop_helpers.serve.metrics import Sample, parse_metrics

KEY_HEADER = "X-API-Key"


class ServeError(RuntimeError):
    """A non-2xx answer: its status, the fields it names, its message, and Retry-After for a 429."""

    def __init__(self, status: int, body: Any, retry_after_s: float | None = None):
        self.status, self.body, self.retry_after_s = status, body, retry_after_s
        self.fields: list[str] = list(body.get("fields", [])) if isinstance(body, dict) else []
        message = body.get("error") if isinstance(body, dict) else str(body)[:200]
        super().__init__(f"HTTP {status}: {message}")


@dataclass
class DanceAnswer:
    """One dance: joints [T,22,3] (metres, 20 fps), the metadata the server sent, and its timing headers."""

    joints: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""
    queue_s: float | None = None
    generation_s: float | None = None
    latency_s: float = 0.0


class DanceClient:
    """Talks to `python -m kpop_helpers.serve`; every method raises ServeError on a 4xx/5xx answer."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout_s: float = 300.0,
                 transport: httpx.BaseTransport | None = None):
        headers = {KEY_HEADER: api_key} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s,
                                 transport=transport)

    def __enter__(self) -> DanceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def dance(self, prompt: str | None = None, *, timeline: list[tuple[float, float, str]] | None = None,
              seconds: float | None = None, seed: int = 0, sampler: str | None = None, steps: int | None = None,
              guidance: float | None = None, eta: float | None = None, format: str = "json") -> np.ndarray:
        """Joints [T,22,3] float32 of one dance from a prompt or a timeline [(start_s, end_s, prompt), ...]."""
        return self.dance_answer(prompt, timeline=timeline, seconds=seconds, seed=seed, sampler=sampler,
                                 steps=steps, guidance=guidance, eta=eta, format=format).joints

    def dance_answer(self, prompt: str | None = None, *, timeline: list[tuple[float, float, str]] | None = None,
                     seconds: float | None = None, seed: int = 0, sampler: str | None = None,
                     steps: int | None = None, guidance: float | None = None, eta: float | None = None,
                     format: str = "json") -> DanceAnswer:
        """Like `dance`, with the metadata, the raw body (BVH text, NPZ bytes) and the server's timings."""
        body: dict[str, Any] = {"seed": seed, "format": format}
        if prompt is not None:
            body["prompt"] = prompt
        if timeline is not None:
            body["timeline"] = [{"start": a, "end": b, "prompt": p} for a, b, p in timeline]
        for key, value in (("seconds", seconds), ("sampler", sampler), ("steps", steps), ("guidance", guidance),
                           ("eta", eta)):
            if value is not None:
                body[key] = value
        start = time.perf_counter()
        response = self.request("POST", "/v1/dances", json=body)
        latency = time.perf_counter() - start
        answer = DanceAnswer(joints=np.zeros((0, 22, 3), np.float32), body=response.content, latency_s=latency,
                             queue_s=_float(response.headers.get("X-Queue-Seconds")),
                             generation_s=_float(response.headers.get("X-Generation-Seconds")))
        if format == "json":
            answer.meta = response.json()
            answer.joints = np.asarray(answer.meta.pop("joints"), dtype=np.float32)
        elif format == "npz":
            with np.load(io.BytesIO(response.content), allow_pickle=False) as data:
                answer.joints = np.asarray(data["motions"], dtype=np.float32)
                answer.meta = {"texts": data["texts"].tolist(), "fps": float(data["fps"][0])}
        answer.meta.setdefault("id", response.headers.get("X-Job-Id"))
        return answer

    def info(self) -> dict[str, Any]:
        """GET /v1/info: model config, variant, sampler, limits, versions, server pid."""
        return self.request("GET", "/v1/info").json()

    def health(self) -> dict[str, Any]:
        """GET /healthz ({"status": "ok"}); ServeError(503) while the server shuts down."""
        return self.request("GET", "/healthz").json()

    def metrics(self) -> dict[str, list[Sample]]:
        """GET /metrics, parsed: samples by metric name (`kpop_helpers.serve.metrics.value_of` sums them)."""
        return parse_metrics(self.request("GET", "/metrics").text)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; ServeError unless the answer is 2xx."""
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise ServeError(response.status_code, body, _float(response.headers.get("Retry-After")))
        return response


def _float(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None
