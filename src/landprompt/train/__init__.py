"""Contrastive training of a satellite time-series encoder into CLIP's image space.

- :mod:`~landprompt.train.config`: the YAML configuration, validated into pydantic dataclasses;
- :mod:`~landprompt.train.pairs`: the catalog's splits, sample-store rows and photo embeddings;
- :mod:`~landprompt.train.data`: batches of windows and targets, augmentations, deterministic sharding;
- :mod:`~landprompt.train.loss`: symmetric InfoNCE, cross-rank gathered, with a queue of past targets;
- :mod:`~landprompt.train.model`: the encoder plus its learnable logit scale;
- :mod:`~landprompt.train.loop`: AdamW, warm-up + cosine, validation retrieval, checkpoints, exact resume;
- :mod:`~landprompt.train.state`: pickle-free training state;
- :mod:`~landprompt.train.synthetic`: planted pairs for tests and benchmarks.

Example:
    >>> from landprompt.train import load_config, train
    >>> result = train(load_config("configs/train_example.yaml", ["run.steps=100"]))  # doctest: +SKIP
"""

from landprompt.train.config import TrainConfig, config_from_dict, load_config
from landprompt.train.loop import Trainer, TrainResult, cosine_lr, train
from landprompt.train.loss import ContrastiveLoss, LogitScale, TargetQueue
from landprompt.train.metrics import read_metrics, retrieval_recall

__all__ = [
    "ContrastiveLoss",
    "LogitScale",
    "TargetQueue",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "config_from_dict",
    "cosine_lr",
    "load_config",
    "read_metrics",
    "retrieval_recall",
    "train",
]
