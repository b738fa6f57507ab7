"""DistillConfig: TrainConfig's fields (data, out, steps, lr, EMA, resume, Drive, W&B) plus the teacher."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kpop_helpers.errors import DataError
from kpop_helpers.train.config import TrainConfig

STAGES = ("guidance", "steps")
TRAINABLE = ("all", "guidance_head")


@dataclass
class DistillConfig(TrainConfig):
    """A distillation run. The student starts from the teacher's weights (`init` defaults to `teacher`)."""

    teacher: str = ""  # the teacher's weights: model_ema.safetensors or one of our checkpoints
    stage: str = "guidance"  # "guidance" | "steps" (see kpop_helpers.distill)
    guidance: float = 2.5  # the guidance scale: the teacher's fixed one, or the student's default with guidance_input
    # Stage "guidance": the student takes the scale as an input (Meng et al.), trained on scales drawn uniformly
    # from [guidance_min, guidance_max]; false: a student for `guidance` alone. A teacher that takes the scale
    # as an input (a guidance student in stage "steps") is always given it.
    guidance_input: bool = True
    guidance_min: float = 1.0
    guidance_max: float = 4.0
    # "all" fine-tunes the whole student; "guidance_head" trains only a guidance student's new head: the
    # teacher's conditioned call stays exactly as it was, and each step costs about one teacher forward.
    trainable: str = "all"
    student_steps: int = 4  # stage "steps": the student's DDIM steps (>= 2); its teacher takes two per student step
    cond_mask_prob: float = 0.0  # the student is always conditioned: no condition dropout
    out: str = "checkpoints/student"
    lr: float = 1e-5  # measured at batch 8 on the benchmark model: 5e-5 drifted away from the target, 1e-5 closed in
    ema_decay: float = 0.99
    sample_prompts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.teacher:
            raise DataError("no teacher", field="teacher", expected="the teacher's weights (--teacher PATH)")
        if not Path(self.teacher).is_file():
            raise DataError("file not found", path=self.teacher, field="teacher",
                            expected="model_ema.safetensors or a checkpoint .pt of our training")
        if self.init == "scratch":
            self.init = self.teacher
        if self.stage not in STAGES:
            raise DataError(f"stage {self.stage!r}", field="stage", expected=f"one of {STAGES}")
        if isinstance(self.student_steps, bool) or not isinstance(self.student_steps, int) or self.student_steps < 2:
            raise DataError(f"student_steps {self.student_steps!r}", field="student_steps", expected="an integer >= 2")
        if not self.guidance >= 0:
            raise DataError(f"guidance {self.guidance!r}", field="guidance", expected="a number >= 0")
        if self.trainable not in TRAINABLE:
            raise DataError(f"trainable {self.trainable!r}", field="trainable", expected=f"one of {TRAINABLE}")
        if self.trainable == "guidance_head" and not (self.stage == "guidance" and self.guidance_input):
            raise DataError("trainable 'guidance_head' without a guidance head", field="trainable",
                            expected="stage 'guidance' with guidance_input true, or trainable 'all'")
        if not 0 <= self.guidance_min <= self.guidance_max:
            raise DataError(f"guidance range [{self.guidance_min!r}, {self.guidance_max!r}]",
                            field="guidance_min/guidance_max", expected="0 <= guidance_min <= guidance_max")
