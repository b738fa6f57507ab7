"""SamplerSpec: the one spelling of a sampler setting, and its one parser.

A setting used to travel as keyword arguments, "ddim10" strings, respacing specs, `SamplingConfig`, the
manifest's `sampling` dict and `GenerationSetup` fields; `SamplerSpec.parse` reads all of them and
`SamplerSpec.respacing` turns one into the respacing of a model's own schedule.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kpop_helpers.errors import DataError
from kpop_helpers.sampling.schedule import DiffusionSchedule, RespacingSpec

SAMPLERS = ("ddpm", "ddim")
FIELDS = ("sampler", "steps", "guidance", "eta")
# Keys of the manifest's `sampling` section that describe the model or the noise, not the sampler.
_MODEL_KEYS = ("schedule", "diffusion_steps", "max_frames", "noise")
_EXPECTED = ("'ddpm' or 'ddim', optionally followed by a step count >= 2 ('ddpm20', 'ddim10'), a dict "
             "{sampler, steps, guidance, eta}, or keywords")


@dataclass(frozen=True)
class SamplerSpec:
    """Which reverse process, how many steps of the model's schedule (None = all), guidance scale, DDIM eta."""

    sampler: str = "ddpm"
    steps: int | None = None
    guidance: float = 2.5
    eta: float = 0.0

    def __post_init__(self) -> None:
        for key, value in _checked(dataclasses.asdict(self), None, "sampling").items():
            object.__setattr__(self, key, value)

    @classmethod
    def parse(cls, value: Any = None, *, path: str | Path | None = None, field: str = "sampling",
              **overrides: Any) -> SamplerSpec:
        """A spec from "ddim10" / "ddpm", a dict, a SamplerSpec or config dataclass, and/or keywords.

        Keywords override `value`; a keyword given as None keeps `value`'s (or the default) setting.
        A bad value raises one DataError naming it (with `path` and `field`) and what is expected.
        """
        values = _values_of(value, path, field)
        unknown = sorted(set(overrides) - set(FIELDS))
        if unknown:
            raise TypeError(f"SamplerSpec.parse got unexpected keywords {unknown} (known: {list(FIELDS)})")
        overrides = {key: override for key, override in overrides.items() if override is not None}
        if overrides:
            values.pop("_steps_in_name", None)  # explicit keywords win over the steps named in "ddim10"
            values.update(_values_of(overrides, path, field))
        return cls(**_checked(values, path, field))

    @property
    def name(self) -> str:
        """'ddpm20', 'ddim10', or 'ddpm' / 'ddim' for the model's full schedule."""
        return self.sampler if self.steps is None else f"{self.sampler}{self.steps}"

    @property
    def stochastic(self) -> bool:
        """Whether sampling draws noise at every step (DDPM, or DDIM with eta > 0)."""
        return self.sampler == "ddpm" or self.eta > 0.0

    def respacing(self, diffusion_steps: int) -> RespacingSpec:
        """The respacing of a model trained on `diffusion_steps` that samples this spec.

        DDPM: all steps when `steps` is None or equal to the training count, else the section list
        [steps] (which keeps the first and last timestep). DDIM: the "ddim{steps}" stride of the
        model's own schedule (all steps when None).
        """
        if self.steps is not None and not 2 <= self.steps <= diffusion_steps:
            raise DataError(f"steps must lie in 2..{diffusion_steps} (the model's diffusion_steps), got {self.steps}",
                            field="steps", expected=f"2..{diffusion_steps}, or None for the full schedule")
        if self.steps is None or self.steps == diffusion_steps:
            return None
        return [self.steps] if self.sampler == "ddpm" else f"ddim{self.steps}"

    def schedule(self, diffusion_steps: int, noise_schedule: str = "cosine") -> DiffusionSchedule:
        """The (numpy) sampling plan of this spec for a model trained on `diffusion_steps`."""
        return DiffusionSchedule(diffusion_steps, noise_schedule, self.respacing(diffusion_steps))

    def to_dict(self) -> dict[str, Any]:
        """{"sampler", "steps", "guidance", "eta"} (the manifest's `sampling` keys)."""
        return dataclasses.asdict(self)


def _values_of(value: Any, path: str | Path | None, field: str) -> dict[str, Any]:
    """The raw settings carried by `value` (not yet checked)."""
    if value is None:
        return {}
    if isinstance(value, str):
        sampler, steps = _split_name(value, path, field)
        return {"sampler": sampler, "steps": steps, "_steps_in_name": steps}
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in FIELDS and k not in _MODEL_KEYS)
        if unknown:
            raise DataError(f"unknown keys {unknown} in {dict(value)!r}", path=path, field=field,
                            expected=f"keys among {list(FIELDS)}")
        values = {key: value[key] for key in FIELDS if key in value}
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):  # SamplerSpec, SamplingConfig, ...
        values = {key: getattr(value, key) for key in FIELDS if hasattr(value, key)}
    else:
        raise DataError(f"got {value!r} ({type(value).__name__})", path=path, field=field, expected=_EXPECTED)
    if isinstance(values.get("sampler"), str):  # {"sampler": "ddim10"} names its steps too
        values["sampler"], named = _split_name(values["sampler"], path, f"{field}.sampler")
        if named is not None:
            values["_steps_in_name"] = named
            values.setdefault("steps", named)
    return values


def _split_name(text: str, path: str | Path | None, field: str) -> tuple[str, int | None]:
    """'ddim10' -> ('ddim', 10), ' DDPM ' -> ('ddpm', None)."""
    name = text.strip().lower()
    for sampler in SAMPLERS:
        rest = name[len(sampler):] if name.startswith(sampler) else None
        if rest == "":
            return sampler, None
        if rest and rest.isdigit() and int(rest) >= 2:
            return sampler, int(rest)
    raise DataError(f"sampler {text!r} is not understood", path=path, field=field, expected=_EXPECTED)


def _checked(values: dict[str, Any], path: str | Path | None, field: str) -> dict[str, Any]:
    """The four settings, type-checked and normalised; DataError naming the bad one otherwise."""
    def bad(key: str, why: str, expected: str) -> DataError:
        return DataError(f"{key} {values.get(key)!r} {why}", path=path, field=f"{field}.{key}", expected=expected)

    named = values.pop("_steps_in_name", None)
    out = {key: values[key] for key in FIELDS if key in values}
    sampler = out.get("sampler", "ddpm")
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise bad("sampler", "is not a sampler: sampler must be 'ddpm' or 'ddim'", "'ddpm' or 'ddim'")
    steps = out.get("steps")
    if steps is not None:
        number = _number(steps)
        if number is None or not float(number).is_integer() or number < 2:
            raise bad("steps", "is not a step count", "an integer >= 2, or None for the model's full schedule")
        steps = int(number)
    if named is not None and steps != named:
        raise bad("steps", f"contradicts the {named} steps named in the sampler", f"steps = {named}")
    guidance = _number(out.get("guidance", 2.5))
    if guidance is None or not math.isfinite(guidance):
        raise bad("guidance", "is not a guidance scale", "a finite number (1 = conditioned only)")
    eta = _number(out.get("eta", 0.0))
    if eta is None or not 0.0 <= eta <= 1.0:
        raise bad("eta", "is out of range: eta must lie in [0, 1]", "a number in [0, 1]")
    return {"sampler": sampler, "steps": steps, "guidance": float(guidance), "eta": float(eta)}


def _number(value: Any) -> float | None:
    """A real number from an int, float or numeric string (JSON and CLI values); None if it is not one."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if not math.isnan(number) else None
