"""Few-step students of a trained MDM denoiser, trained with the fine-tuning machinery (`kpop_helpers.train`).

Two stages, each a `Distiller` run (CheckpointManager with Drive sync, exact resume, EMA, TensorBoard / W&B,
Accelerate, progress bar: everything `Trainer` has):

- "guidance" (Meng et al., "On Distillation of Guided Diffusion Models", stage 1): the student's conditioned
  x0 matches the teacher's classifier-free-guided x0, so it samples with one model call per step (batch 1).
  With `guidance_input` (the default) the scale is the student's input (`MDM.output_guidance`), trained on
  scales drawn from [guidance_min, guidance_max]; without it the student bakes in `guidance` and samples at 1.0.
- "steps" (Salimans & Ho's progressive distillation, written for MDM's x0 parameterisation and cosine
  schedule): one deterministic DDIM step of the student from t to s equals two DDIM steps of the (guided, or
  guidance-distilled) teacher t -> (t+s)/2 -> s, on the DDIM timesteps of `student_steps`. Run it again on its
  own student to halve the steps once more.

    python -m kpop_helpers.distill --teacher model_ema.safetensors --data data/train.npz --out runs/student --resume auto
"""

from kpop_helpers.distill.config import STAGES, DistillConfig
from kpop_helpers.distill.distiller import Distiller, student_sampling

__all__ = ["STAGES", "DistillConfig", "Distiller", "student_sampling"]
