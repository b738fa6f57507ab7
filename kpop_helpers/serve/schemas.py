"""What a dance request may say (pydantic), its limits, and 4xx answers that name the field at fault."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kpop_helpers.editing.timeline import Timeline
from kpop_helpers.errors import DataError
from kpop_helpers.sampling.spec import SamplerSpec

MAX_SECONDS = 600.0  # 10 minutes of dance: 12,000 frames, a few tens of MB of joints as JSON
MIN_SECONDS = 1.0
MAX_PROMPT_CHARS = 500  # the text tower truncates far earlier; this only bounds what is parsed
MAX_TIMELINE_ENTRIES = 64
MAX_GUIDANCE = 20.0  # classifier-free guidance far above MDM's 2.5 only amplifies artefacts
MAX_SEED = 2**32 - 1
FORMATS = ("json", "npz", "bvh")
MEDIA_TYPES = {"json": "application/json", "npz": "application/x-npz", "bvh": "application/x-bvh"}
# Accept header spellings of each format (first match in the client's order wins).
ACCEPTED = {"application/json": "json", "application/x-npz": "npz", "application/octet-stream": "npz",
            "application/x-bvh": "bvh", "text/x-bvh": "bvh", "*/*": "json", "application/*": "json"}


class TimelineEntryIn(BaseModel):
    """One part of a timeline: from `start` to `end` (seconds) the dance follows `prompt`."""

    model_config = ConfigDict(extra="forbid")
    start: float = Field(ge=0.0, le=MAX_SECONDS)
    end: float = Field(gt=0.0, le=MAX_SECONDS)
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)


class DanceRequest(BaseModel):
    """POST /v1/dances: a prompt or a timeline, the length, the seed and the sampler (None: the export's)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, min_length=1, max_length=MAX_PROMPT_CHARS, examples=["a powerful hip-hop dance"])
    timeline: list[TimelineEntryIn] | None = Field(None, min_length=1, max_length=MAX_TIMELINE_ENTRIES)
    seconds: float | None = Field(None, ge=MIN_SECONDS, le=MAX_SECONDS,
                                  description="dance length; default: the timeline's end, or the model's window")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    sampler: str | None = Field(None, max_length=16, description="'ddpm' or 'ddim', optionally with steps: 'ddim10'")
    steps: int | None = Field(None, ge=2, le=10_000, description="2..the model's diffusion_steps")
    guidance: float | None = Field(None, ge=0.0, le=MAX_GUIDANCE)
    eta: float | None = Field(None, ge=0.0, le=1.0)
    format: Literal["json", "npz", "bvh"] | None = Field(None, description="default: from Accept, else json")


class FieldError(Exception):
    """A request that fails a check beyond its schema: answered with `status` and the field named."""

    def __init__(self, field: str, message: str, *, status: int = 422, expected: str | None = None):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status, self.expected = field, message, status, expected


@dataclass(frozen=True)
class DanceJob:
    """A validated request: the keywords of `EdgeGenerator.generate_result` and the answer's format."""

    kwargs: dict[str, Any]
    format: str
    prompt: str


def error_body(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The one 4xx body: {"error": first message, "fields": [...], "detail": [{field, message, ...}]}."""
    return {"error": items[0]["message"] if items else "bad request",
            "fields": [item["field"] for item in items], "detail": items}


def field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    """pydantic's loc ("body", "timeline", 0, "end") as the field path "timeline[0].end" ("body" for the body)."""
    parts = [part for part in loc if part != "body"]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def validation_items(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """pydantic errors made readable: each names its field, says what is wrong, and what it got."""
    items = []
    for error in errors:
        kind = error.get("type", "value_error")
        name = "body" if kind == "json_invalid" else field_of(tuple(error.get("loc", ())))
        if kind == "extra_forbidden":
            message = f"{name}: unknown field (known: {', '.join(DanceRequest.model_fields)})"
        elif kind == "json_invalid":
            message = f"body: not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
        elif kind == "missing" and name == "body":
            message = "body: a JSON object is required"
        else:
            message = f"{name}: {error.get('msg', 'invalid')}"
        item = {"field": name, "message": message, "type": kind}
        if "input" in error and kind not in ("missing", "json_invalid") and _small(error["input"]):
            item["input"] = error["input"]
        items.append(item)
    return items


def data_error_item(exc: DataError) -> dict[str, Any]:
    """A DataError (from the sampler parser, the timeline or the runtime) as a field item."""
    name = (exc.field or "body").removeprefix("sampling.")
    if exc.field == "timeline" and exc.record is not None:
        name = f"timeline[{exc.record}]"
    item: dict[str, Any] = {"field": name, "message": f"{name}: {exc}", "type": "data_error"}
    if exc.expected:
        item["expected"] = exc.expected
    return item


def choose_format(requested: str | None, accept: str | None) -> str:
    """The body's `format`, else the first format the Accept header names, else JSON; FieldError(406) otherwise."""
    if requested is not None:
        return requested
    if not accept or not accept.strip():
        return "json"
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ACCEPTED:
            return ACCEPTED[media]
    raise FieldError("Accept", f"cannot answer in {accept!r}", status=406,
                     expected=f"one of {sorted(set(MEDIA_TYPES.values()))}, or the body's format field")


def dance_job(body: DanceRequest, *, sampling: dict[str, Any], diffusion_steps: int, accept: str | None) -> DanceJob:
    """Check what the schema cannot (one of prompt/timeline, the sampler against the export) -> a DanceJob."""
    if (body.prompt is None) == (body.timeline is None):
        raise FieldError("prompt", "give either a prompt or a timeline (exactly one of them)")
    fmt = choose_format(body.format, accept)
    try:
        spec = SamplerSpec.parse(sampling, sampler=body.sampler, steps=body.steps, guidance=body.guidance,
                                 eta=body.eta)
        spec.respacing(diffusion_steps)  # steps within the export's own schedule
    except DataError as exc:
        item = data_error_item(exc)
        raise FieldError(item["field"], item["message"], expected=exc.expected) from exc
    kwargs: dict[str, Any] = {"seed": body.seed, "sampler": body.sampler, "steps": body.steps,
                              "guidance": body.guidance, "eta": body.eta, "seconds": body.seconds}
    if body.timeline is not None:
        try:
            kwargs["timeline"] = Timeline.parse([(e.start, e.end, e.prompt) for e in body.timeline])
        except DataError as exc:
            item = data_error_item(exc)
            raise FieldError(item["field"], item["message"], expected=exc.expected) from exc
        prompt = " | ".join(e.prompt for e in body.timeline)
    else:
        prompt = body.prompt.strip()
        if not prompt:
            raise FieldError("prompt", "is blank")
        kwargs["prompts"] = [prompt]
    return DanceJob(kwargs=kwargs, format=fmt, prompt=prompt)


def _small(value: Any) -> bool:
    """Echo an offending input back only when it is short (never a whole body)."""
    return isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) <= 80) or value is None
