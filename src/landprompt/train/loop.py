"""The training loop: AdamW with a warm-up + cosine schedule, validation retrieval, checkpoints, exact resume.

One process or torchrun's DDP processes run the same code (:func:`train`). Only rank 0 logs and writes;
every process computes the same validation metrics from the gathered embeddings.

Example:
    >>> from landprompt.train import load_config, train
    >>> result = train(load_config("configs/train_example.yaml"))  # doctest: +SKIP
    >>> result.checkpoint  # doctest: +SKIP
    PosixPath('runs/example/checkpoints/step_00010000')
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils import clip_grad_norm_

from landprompt import checks
from landprompt.embedder.models import load_checkpoint, save_checkpoint
from landprompt.errors import BadInputError
from landprompt.progress import progress_bar
from landprompt.train.config import TrainConfig
from landprompt.train.data import (
    PairDataset,
    StepBatchSampler,
    WindowBatch,
    eval_batches,
    make_loader,
    shard_range,
)
from landprompt.train.distributed import (
    DistEnv,
    all_gather_rows,
    all_reduce_mean,
    barrier,
    init_distributed,
    merge_statistics,
    shutdown_distributed,
)
from landprompt.train.loss import ContrastiveLoss
from landprompt.train.metrics import MetricsLogger, retrieval_recall
from landprompt.train.model import ContrastiveModel, build_model, parameter_groups
from landprompt.train.pairs import TrainData, load_train_data, photo_embedding_info
from landprompt.train.state import (
    capture_rng,
    checkpoint_dir,
    load_training_state,
    publish,
    resolve_resume,
    restore_rng,
    save_training_state,
    staging_dir,
)


@dataclass
class TrainResult:
    """What a finished (or stopped) run leaves.

    Attributes:
        out: The run folder.
        step: Steps taken in all.
        checkpoint: The last checkpoint folder written (None if none).
        metrics: The last logged value of every metric.
        samples_per_s: Training throughput of this invocation (global samples per second).
    """

    out: Path
    step: int
    checkpoint: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    samples_per_s: float = 0.0


def cosine_lr(step: int, base: float, minimum: float, warmup: int, total: int) -> float:
    """Learning rate of 0-based ``step``: linear warm-up over ``warmup`` steps, then cosine to ``minimum``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return minimum + 0.5 * (base - minimum) * (1.0 + math.cos(math.pi * min(1.0, progress)))


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (every process alike)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Contrastive training of a satellite encoder into CLIP's image space.

    Args:
        config: The checked configuration.
        env: This process's place in the process group (default: one CPU/GPU process).
        data: Training and validation pairs; default: read from ``config.data``.
    """

    def __init__(
        self, config: TrainConfig, env: DistEnv | None = None, data: TrainData | None = None
    ) -> None:
        self.config = config
        self.env = env or DistEnv()
        self.device = self.env.device
        self.out = Path(config.run.out)
        if config.run.threads:
            torch.set_num_threads(config.run.threads)
        self.bf16 = _use_bf16(config.run.precision, self.device)
        seed_everything(config.run.seed)

        if data is None:
            dim, clip_model, clip_pretrained = photo_embedding_info(config.data.photo_embeddings)
        else:
            dim, clip_model, clip_pretrained = data.dim, data.clip_model, data.clip_pretrained
        self.model: ContrastiveModel = build_model(
            config.model, config.loss, dim, clip_model, clip_pretrained
        )
        self.model.to(self.device)
        window = self.model.window_encoder.pool_size
        self.data = data or load_train_data(config.data, config.augment, window, config.run.seed)
        self.wrapped: torch.nn.Module = self.model
        if self.env.distributed:
            # the encoder's statistics (buffers outside the state dict) are per process, merged at save()
            persistent = set(self.model.state_dict())
            local = [name for name, _ in self.model.named_buffers() if name not in persistent]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.model, local)
            self.wrapped = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=not config.data.use_latlon,
            )
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, config.optim.weight_decay),
            lr=config.optim.lr,
            betas=config.optim.betas,
            eps=config.optim.eps,
        )
        self.loss_fn = ContrastiveLoss(dim, config.loss.queue_size, self.env.rank, self.env.world_size)
        self.loss_fn.to(self.device)
        self.step = 0
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self._loss_count = 0
        self.last_checkpoint: Path | None = None
        self.last_metrics: dict[str, float] = {}

    # ---------------------------------------------------------------------------------------------- steps

    def train_step(self, batch: WindowBatch) -> tuple[Tensor, Tensor]:
        """One optimisation step on this process's share of a global batch.

        Returns:
            This process's loss and the global gradient norm before clipping (detached, not synchronised).
        """
        optim = self.config.optim
        lr = cosine_lr(self.step, optim.lr, optim.min_lr, optim.warmup_steps, self.config.run.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.wrapped.train()
        batch = batch.to(self.device, non_blocking=True)
        with self._autocast():
            features, scale = self.wrapped(batch.x, batch.mask, batch.month, batch.latlon)
        loss = self.loss_fn(features, batch.target, scale)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = clip_grad_norm_(self.model.parameters(), optim.grad_clip or math.inf)
        self.optimizer.step()
        self.model.logit_scale.clamp_()
        self.step += 1
        return loss.detach(), grad_norm.detach()

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def batches(self, start: int, stop: int) -> Iterator[WindowBatch]:
        """This process's training batches of steps ``start`` to ``stop``."""
        sampler = StepBatchSampler(
            len(self.data.train),
            self.config.data.batch_size,
            seed=self.config.run.seed,
            start_step=start,
            steps=stop,
            rank=self.env.rank,
            world_size=self.env.world_size,
        )
        loader = make_loader(
            self.data.train,
            sampler,
            num_workers=self.config.data.num_workers,
            pin_memory=self.device.type == "cuda",
            seed=self.config.run.seed,
        )
        return iter(loader)

    # ------------------------------------------------------------------------------------------------ fit

    def fit(self, stop_at: int | None = None) -> TrainResult:
        """Train from the current step (after :meth:`resume`) to ``run.steps``, or to ``stop_at``.

        Logs every ``run.log_every`` steps, validates every ``run.val_every`` and at the end, checkpoints
        every ``run.checkpoint_every`` and at the last step.
        """
        run = self.config.run
        stop = min(run.steps, stop_at) if stop_at is not None else run.steps
        logger = self._open_logger()
        start_step, start_time = self.step, time.perf_counter()
        interval_time, interval_step = start_time, self.step
        try:
            with self._progress(stop) as advance:
                for batch in self.batches(self.step, stop):
                    loss, grad_norm = self.train_step(batch)
                    self._loss_sum += loss.double()
                    self._loss_count += 1
                    metrics: dict[str, float] = {}
                    if self.step % run.log_every == 0 or self.step == stop:
                        now = time.perf_counter()
                        rate = (
                            (self.step - interval_step) * self.config.data.batch_size / (now - interval_time)
                        )
                        metrics |= self._train_metrics(grad_norm, rate)
                        interval_time, interval_step = now, self.step
                    if (run.val_every and self.step % run.val_every == 0) or self.step == run.steps:
                        metrics |= self.validate()
                    if metrics:
                        self.last_metrics |= metrics
                        if logger is not None:
                            logger.log(self.step, metrics)
                    if (run.checkpoint_every and self.step % run.checkpoint_every == 0) or self.step == stop:
                        self.save()
                    last = self.last_metrics.get("loss")
                    advance(note="" if last is None else f"loss {last:.4f}")
        finally:
            if logger is not None:
                logger.close()
        elapsed = time.perf_counter() - start_time
        rate = (self.step - start_step) * self.config.data.batch_size / elapsed if elapsed > 0 else 0.0
        return TrainResult(self.out, self.step, self.last_checkpoint, dict(self.last_metrics), rate)

    def _train_metrics(self, grad_norm: Tensor, samples_per_s: float) -> dict[str, float]:
        """Mean loss over the steps since the last log (all processes), and the step's other figures."""
        mean = all_reduce_mean(self._loss_sum / max(1, self._loss_count), self.env)
        self._loss_sum.zero_()
        self._loss_count = 0
        return {
            "epoch": self.step * self.config.data.batch_size / len(self.data.train),
            "lr": self.optimizer.param_groups[0]["lr"],
            "loss": float(mean),
            "logit_scale": float(self.model.logit_scale().detach()),
            "grad_norm": float(grad_norm),
            "samples_per_s": samples_per_s,
        }

    def _open_logger(self) -> MetricsLogger | None:
        if not self.env.is_main:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.yaml").write_text(yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        return MetricsLogger(self.out, self.config.run.tensorboard, resume_step=self.step)

    def _progress(self, stop: int) -> AbstractContextManager[Any]:
        return progress_bar("training", stop, self.config.run.progress and self.env.is_main, done=self.step)

    # ------------------------------------------------------------------------------------------ validation

    @torch.no_grad()
    def embed(self, dataset: PairDataset) -> tuple[Tensor, Tensor]:
        """Embeddings and mean targets of every sample of ``dataset``, unaugmented, gathered in order."""
        indices, counts = shard_range(len(dataset), self.env.rank, self.env.world_size)
        loader = make_loader(dataset, eval_batches(indices, self.config.data.val_batch_size))
        features, targets = [], []
        self.model.eval()
        for batch in loader:
            batch = batch.to(self.device, non_blocking=True)
            with self._autocast():
                f, _ = self.model(batch.x, batch.mask, batch.month, batch.latlon)
            features.append(f.float())
            targets.append(batch.target)
        dim = self.data.dim
        local_f = torch.cat(features) if features else torch.zeros(0, dim, device=self.device)
        local_t = torch.cat(targets) if targets else torch.zeros(0, dim, device=self.device)
        return all_gather_rows(local_f, counts, self.env), all_gather_rows(local_t, counts, self.env)

    def validate(self) -> dict[str, float]:
        """Retrieval recall@1/@10 both ways and InfoNCE over the whole validation split ({} without one)."""
        if self.data.val is None:
            return {}
        sat, photo = self.embed(self.data.val)
        scale = self.model.logit_scale().detach().float()
        logits = scale * sat @ photo.T
        labels = torch.arange(len(sat), device=sat.device)
        loss = (
            torch.nn.functional.cross_entropy(logits, labels)
            + torch.nn.functional.cross_entropy(logits.T, labels)
        ) / 2
        recall = retrieval_recall(sat, photo, (1, 10))
        return {"val_loss": float(loss), "val_samples": len(sat)} | {f"val_{k}": v for k, v in recall.items()}

    # ---------------------------------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        """Everything besides the encoder weights that an exact resume needs."""
        optim = self.config.optim
        return {
            "step": self.step,
            "world_size": self.env.world_size,
            "optimizer": self.optimizer.state_dict(),
            "logit_scale": self.model.logit_scale.state_dict(),
            "queue": self.loss_fn.queue.state_dict(),
            "loss_accumulator": {"sum": self._loss_sum, "count": self._loss_count},
            "schedule": {
                "kind": "warmup_cosine",
                "lr": optim.lr,
                "min_lr": optim.min_lr,
                "warmup_steps": optim.warmup_steps,
                "total_steps": self.config.run.steps,
            },
            "rng": capture_rng(),
        }

    def save(self) -> Path:
        """Write a checkpoint of the current step (rank 0) and wait for it (every process).

        Every process first merges the encoder's statistics (e.g. a linear head's input moments) over all
        processes' data, and goes on from the merged ones.
        """
        final = checkpoint_dir(self.out, self.step)
        statistics = merge_statistics(self.model.encoder.statistics(), self.env)
        if self.env.is_main:
            tmp = staging_dir(final)
            provenance = {
                "step": self.step,
                "logit_scale": float(self.model.logit_scale().detach()),
                "world_size": self.env.world_size,
                "train_samples": len(self.data.train),
                "val_samples": 0 if self.data.val is None else len(self.data.val),
                "validation": {k: v for k, v in self.last_metrics.items() if k.startswith("val_")},
                **self.data.provenance,
            }
            save_checkpoint(
                self.model.encoder,
                tmp,
                config=self.config.to_dict(),
                provenance=provenance,
                statistics=statistics,
            )
            save_training_state(tmp, self.state())
            publish(tmp, final, self.config.run.keep_checkpoints)
        barrier(self.env)
        self.last_checkpoint = final
        return final

    def resume(self, folder: Path) -> None:
        """Restore weights, optimiser, logit scale, queue, step and RNGs from a checkpoint folder.

        Raises:
            BadInputError: If the checkpoint belongs to another model or another schedule.
        """
        encoder = load_checkpoint(folder, device="cpu")
        try:
            self.model.encoder.load_state_dict(encoder.state_dict())
            statistics = encoder.statistics()  # counts over all processes, back to this process's
            ws = self.env.world_size
            self.model.encoder.load_statistics(
                {k: v / ws if k.endswith("count") else v for k, v in statistics.items()}
            )
        except RuntimeError as err:
            raise BadInputError(f"{folder} holds another model than model.* describes: {err}") from err
        state = load_training_state(folder)
        if state["schedule"]["total_steps"] != self.config.run.steps:
            raise BadInputError(
                f"{folder} was written by a run of {state['schedule']['total_steps']} steps; run.steps is "
                f"{self.config.run.steps} (the learning-rate schedule would change)"
            )
        self.model.logit_scale.load_state_dict(state["logit_scale"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.loss_fn.queue.load_state_dict(state["queue"])
        self._loss_sum = state["loss_accumulator"]["sum"].to(self.device)
        self._loss_count = int(state["loss_accumulator"]["count"])
        self.step = int(state["step"])
        restore_rng(state["rng"])
        self.last_checkpoint = folder


def _use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to autocast to bf16: ``auto`` on CUDA; ``bf16`` needs CUDA."""
    if precision == "bf16" and device.type != "cuda":
        raise BadInputError(
            "run.precision bf16 needs a GPU (bf16 autocast runs on CUDA only); use auto or fp32"
        )
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def train(config: TrainConfig, stop_at: int | None = None) -> TrainResult:
    """Train as ``config`` says, in this process or as one of torchrun's processes.

    Resumes from ``run.resume`` (by default the run folder's latest checkpoint).

    Args:
        config: The checked configuration (see :func:`~landprompt.train.config.load_config`).
        stop_at: Stop (with a checkpoint) after this step, e.g. to fit a job's time limit; the schedule
            still spans ``run.steps``.

    Returns:
        The run's :class:`TrainResult` (on every process).
    """
    if stop_at is not None:
        checks.count("the stop step (stop_at)", stop_at, 1)
    env = init_distributed(config.run.device)
    try:
        trainer = Trainer(config, env)
        folder = resolve_resume(config.run.resume, Path(config.run.out))
        if folder is not None:
            trainer.resume(folder)
        return trainer.fit(stop_at)
    finally:
        shutdown_distributed(env)
