"""Fine-tuning MDM on your choreography: config, data windows, the trainer and its CLI."""

from kpop_helpers.train.config import TrainConfig

__all__ = ["TrainConfig", "Trainer", "train"]


def __getattr__(name: str):
    # The trainer pulls in torch, the model and the checkpoint manager: import it only when asked.
    if name in ("Trainer", "TrainResult"):
        from kpop_helpers.train import trainer

        return getattr(trainer, name)
    if name == "train":
        from kpop_helpers.train.__main__ import train

        return train
    raise AttributeError(name)
