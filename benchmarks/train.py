"""Training-throughput benchmark: the whole training step vs the pure model step on in-memory tensors.

It writes a planted pairs dataset (:mod:`landprompt.train.synthetic`: catalog, Zarr sample store, photo
embeddings; ``--samples`` places, 5 x 5 chips, 12 months, ``--dim``-d photo embeddings) and builds a
:class:`~landprompt.train.Trainer` of the default ``sits`` encoder (Presto-size backbone, window 5,
linear head) on it. Then, in the same run, on the same threads:

* **landprompt**: ``--steps`` training steps as ``landprompt train`` runs them: the step sampler, the
  data loader (``--workers`` processes) reading window batches, augmenting them (month, sensor and pixel
  dropout) and drawing photo targets, then forward, InfoNCE, backward, clipping and AdamW;
* **model only** (the yardstick): the same number of :meth:`Trainer.train_step` calls on one batch held
  in memory: forward + backward + AdamW and nothing else.

Prints one JSON line: samples per second of each, their ratio, and the data-pipeline overhead
``1 - ratio`` (goal < 0.10). Usage: ``python benchmarks/train.py [--samples 1024] [--batch 64]
[--steps 5] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from _common import emit
from landprompt.train import Trainer, config_from_dict
from landprompt.train.synthetic import planted_pairs, write_planted_pairs


def build_trainer(folder: str, args: argparse.Namespace) -> Trainer:
    """A trainer of the default sits encoder on a freshly written planted pairs dataset."""
    pairs = planted_pairs(args.samples, classes=32, window=5, dim=args.dim, seed=0)
    paths = write_planted_pairs(folder, pairs, split_fractions=(0.9, 0.1, 0.0))
    config = config_from_dict(
        {
            "run": {"out": f"{folder}/run", "steps": 10 * args.steps, "progress": False, "device": "cpu"},
            "data": {
                "store": str(paths.store),
                "catalog": str(paths.catalog),
                "photo_embeddings": str(paths.photo_embeddings),
                "batch_size": args.batch,
                "num_workers": args.workers,
            },
            "model": {"arguments": {"pool_size": 5}},
            "optim": {"warmup_steps": 1},
        }
    )
    return Trainer(config)


def time_pipeline(trainer: Trainer, steps: int) -> float:
    """Seconds for ``steps`` full training steps (loader, augmentations, targets, model step)."""
    batches = trainer.batches(trainer.step, trainer.step + steps + 1)
    trainer.train_step(next(batches))  # start the workers and fill their prefetch queue
    start = time.perf_counter()
    for batch in batches:
        trainer.train_step(batch)
    return time.perf_counter() - start


def time_model(trainer: Trainer, steps: int) -> float:
    """Seconds for ``steps`` model steps on one in-memory batch (the yardstick)."""
    batch = next(trainer.batches(trainer.step, trainer.step + 1))
    trainer.train_step(batch)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(folder, args)
        pipeline, model = [], []
        for _ in range(args.repeats):
            pipeline.append(time_pipeline(trainer, args.steps))
            model.append(time_model(trainer, args.steps))
    ours = args.steps * args.batch / min(pipeline)
    yardstick = args.steps * args.batch / min(model)
    emit(
        benchmark="train.throughput",
        encoder="sits (Presto-size backbone, window 5, linear head)",
        batch=args.batch,
        steps=args.steps,
        workers=args.workers,
        threads=torch.get_num_threads(),
        landprompt_samples_per_s=round(ours, 1),
        model_only_samples_per_s=round(yardstick, 1),
        ratio=round(ours / yardstick, 3),
        pipeline_overhead=round(1 - ours / yardstick, 3),
        goal_overhead=0.10,
    )


if __name__ == "__main__":
    main()
