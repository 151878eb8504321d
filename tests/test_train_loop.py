"""End-to-end training on a planted pairs dataset: retrieval above chance, exact resume, DDP (gloo), CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from landprompt.embedder.models import load_checkpoint, read_checkpoint_config
from landprompt.errors import BadInputError
from landprompt.schema import apply_overrides
from landprompt.train import config_from_dict, read_metrics, train
from landprompt.train.synthetic import PairsPaths

TINY_SITS = {"embed_dim": 32, "depth": 1, "num_heads": 2, "pool_size": 3}


def tiny_config(paths: PairsPaths, out: Path, **overrides: Any) -> dict[str, Any]:
    """A training config for the tiny sits on the planted pairs; overrides as ``section__key=value``."""
    raw: dict[str, Any] = {
        "run": {
            "out": str(out),
            "steps": 12,
            "log_every": 1,
            "val_every": 6,
            "checkpoint_every": 6,
            "keep_checkpoints": 0,
            "progress": False,
            "seed": 1,
        },
        "data": {
            "store": str(paths.store),
            "catalog": str(paths.catalog),
            "photo_embeddings": str(paths.photo_embeddings),
            "batch_size": 32,
            "num_workers": 0,
            "use_latlon": False,
        },
        "augment": {"month_dropout": 0.1, "sensor_dropout": 0.1, "pixel_dropout": 0.1},
        "model": {"arguments": dict(TINY_SITS)},
        "optim": {"lr": 5e-3, "min_lr": 5e-3, "warmup_steps": 4},
    }
    return apply_overrides(raw, [f"{k.replace('__', '.')}={v}" for k, v in overrides.items()])


def losses(out: Path, column: str = "loss") -> dict[int, float]:
    return {int(row["step"]): row[column] for row in read_metrics(out) if column in row}


@pytest.mark.slow  # 200 training steps (86 s on an idle 2-core machine)
def test_training_lifts_validation_recall_far_above_chance(planted_pairs_dataset, tmp_path: Path) -> None:
    paths, _ = planted_pairs_dataset
    config = config_from_dict(
        tiny_config(
            paths,
            tmp_path / "run",
            run__steps=200,
            run__val_every=0,
            run__log_every=50,
            run__checkpoint_every=0,
        )
    )
    result = train(config)
    metrics = result.metrics
    chance = 1.0 / metrics["val_samples"]
    print(  # the figures for the record (pytest -s)
        f"\nval samples {metrics['val_samples']:.0f}, chance R@1 {chance:.4f}; "
        f"sat->photo R@1 {metrics['val_sat2photo_r1']:.4f} R@10 {metrics['val_sat2photo_r10']:.4f}; "
        f"photo->sat R@1 {metrics['val_photo2sat_r1']:.4f} R@10 {metrics['val_photo2sat_r10']:.4f}"
    )
    assert metrics["val_sat2photo_r1"] > 5 * chance
    assert metrics["val_photo2sat_r1"] > 5 * chance
    assert metrics["val_sat2photo_r10"] > 0.5 and metrics["val_photo2sat_r10"] > 0.5
    rows = read_metrics(result.out)
    assert rows[-1]["loss"] < rows[0]["loss"] - 1.0

    # the checkpoint is a plain encoder checkpoint (DESIGN format) that embeds like the trained model
    assert result.checkpoint is not None
    document = read_checkpoint_config(result.checkpoint)
    assert document["provenance"]["step"] == 200 and document["embed_dim"] == 16
    assert document["spec"]["clip_model"] == "synthetic"
    assert document["config"]["optim"]["lr"] == 5e-3
    encoder = load_checkpoint(result.checkpoint, device="cpu")
    x = torch.rand(2, 9, 12, 17)
    assert encoder.forward_window(x).shape == (2, 16)  # type: ignore[operator]


@pytest.mark.slow  # a training run and its resumed copy
def test_resume_continues_bit_identically(planted_pairs_dataset, tmp_path: Path) -> None:
    paths, _ = planted_pairs_dataset
    # a bottleneck head: its input's running moments (checkpoint statistics) must resume exactly too
    extra = {"data__target": "sample", "loss__queue_size": 64, "model__arguments__bottleneck": 8}
    full = config_from_dict(tiny_config(paths, tmp_path / "full", **extra))
    train(full)
    step6 = tmp_path / "full" / "checkpoints" / "step_00000006"

    # resume from the step-6 checkpoint into another folder: the same losses, weights and state
    resumed = config_from_dict(tiny_config(paths, tmp_path / "resumed", run__resume=str(step6), **extra))
    train(resumed)
    reference, again = losses(tmp_path / "full"), losses(tmp_path / "resumed")
    assert sorted(again) == list(range(7, 13))
    assert all(again[s] == reference[s] for s in again)  # exact, not approximate
    assert losses(tmp_path / "resumed", "val_sat2photo_r1") == {
        12: losses(tmp_path / "full", "val_sat2photo_r1")[12]
    }
    last = Path("checkpoints") / "step_00000012"
    for name in ("sits.safetensors", "training_state/state.safetensors"):
        a, b = load_file(tmp_path / "full" / last / name), load_file(tmp_path / "resumed" / last / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert "statistics.head_input.moment" in load_file(tmp_path / "full" / last / "sits.safetensors")

    # an interrupted run (stop_at) continues from its latest checkpoint with run.resume: auto
    interrupted = config_from_dict(tiny_config(paths, tmp_path / "interrupted", **extra))
    assert train(interrupted, stop_at=6).step == 6
    assert train(interrupted).step == 12
    assert losses(tmp_path / "interrupted") == reference

    # a fresh start over existing checkpoints, or a resume with another schedule, is refused
    with pytest.raises(BadInputError, match="already holds checkpoints"):
        train(config_from_dict(tiny_config(paths, tmp_path / "full", run__resume="null")))
    with pytest.raises(BadInputError, match=r"run\.steps"):
        train(
            config_from_dict(
                tiny_config(paths, tmp_path / "other", run__steps=20, run__resume=str(step6), **extra)
            )
        )


@pytest.mark.slow  # torchrun with two gloo processes
def test_two_gloo_processes_match_one_process(planted_pairs_dataset, tmp_path: Path) -> None:
    """Same global batch of 32: 2 processes x 16 (torchrun, gloo) vs 1 x 32; losses agree to 1e-4.

    The head's input moments (a bottleneck head) cover the global data too, not rank 0's half.
    """
    paths, _ = planted_pairs_dataset
    raw = tiny_config(
        paths,
        tmp_path / "ddp",
        run__steps=8,
        run__val_every=8,
        run__checkpoint_every=8,
        run__threads=1,
        loss__queue_size=32,
        model__arguments__bottleneck=8,
    )
    config_file = tmp_path / "ddp.yaml"
    config_file.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "landprompt.cli.train",
        str(config_file),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    single = raw | {"run": raw["run"] | {"out": str(tmp_path / "single")}}
    train(config_from_dict(single))
    ddp, one = losses(tmp_path / "ddp"), losses(tmp_path / "single")
    assert sorted(ddp) == sorted(one) == list(range(1, 9))
    gap = max(abs(ddp[s] - one[s]) for s in one)
    print(f"\nmax |loss(2 gloo processes) - loss(1 process)| over 8 steps: {gap:.2e}")
    assert gap < 1e-4
    for column in ("logit_scale", "val_sat2photo_r10", "val_photo2sat_r10"):
        a, b = losses(tmp_path / "ddp", column), losses(tmp_path / "single", column)
        assert a.keys() == b.keys() and all(abs(a[s] - b[s]) < 1e-4 for s in a), column
    last = Path("checkpoints") / "step_00000008"
    provenance = read_checkpoint_config(tmp_path / "ddp" / last)["provenance"]
    assert provenance["world_size"] == 2
    a, b = (load_file(tmp_path / run / last / "sits.safetensors") for run in ("ddp", "single"))
    for name in ("mean", "moment"):
        key = f"statistics.head_input.{name}"
        gap = float((a[key] - b[key]).abs().max() / b[key].abs().max())
        print(f"head input {name}: max |2 gloo processes - 1 process| / max |1 process| = {gap:.1e}")
        assert gap < 1e-5, name  # rank 0 alone: 4.5e-3
    assert float(a["statistics.head_input.count"]) == float(b["statistics.head_input.count"]) == 8 * 32


def test_cli_trains_and_reports_errors_on_one_line(planted_pairs_dataset, tmp_path: Path) -> None:
    from landprompt.cli.train import app

    paths, _ = planted_pairs_dataset
    config_file = tmp_path / "cli.yaml"
    config_file.write_text(yaml.safe_dump(tiny_config(paths, tmp_path / "cli", run__steps=4)))
    runner = CliRunner()
    done = runner.invoke(app, [str(config_file), "--set", "run.val_every=0", "--resume", "none"])
    assert done.exit_code == 0, done.output
    assert "landprompt train: step 4" in done.output and (tmp_path / "cli" / "metrics.csv").is_file()
    bad = runner.invoke(app, [str(config_file), "--set", "optim.lr=-1"])
    assert bad.exit_code == 2 and "optim.lr must be > 0" in bad.output
    missing = tiny_config(paths, tmp_path / "missing", data__catalog=str(tmp_path / "none.duckdb"))
    with pytest.raises(BadInputError, match=r"data\.catalog"):
        train(config_from_dict(missing))
    with pytest.raises(BadInputError, match=r"run\.precision bf16 needs a GPU"):
        train(config_from_dict(tiny_config(paths, tmp_path / "bf16", run__precision="bf16")))
    with pytest.raises(BadInputError, match=r"data\.batch_size \(1000\)"):
        train(config_from_dict(tiny_config(paths, tmp_path / "big", data__batch_size=1000)))
    too_wide = tiny_config(paths, tmp_path / "wide", model__arguments="{pool_size: 5}")
    with pytest.raises(BadInputError, match=r"lower model\.arguments\.pool_size"):
        train(config_from_dict(too_wide))
    other_dim = tiny_config(paths, tmp_path / "dim", model__arguments="{clip_dim: 8}")
    with pytest.raises(BadInputError, match=r"model\.arguments\.clip_dim"):
        train(config_from_dict(other_dim))
    assert np.isfinite(losses(tmp_path / "cli")[4])


@pytest.mark.slow  # the real Presto architecture and weights, trained two steps
def test_training_starts_from_the_official_presto_weights(planted_pairs_dataset, tmp_path: Path) -> None:
    """model.presto_weights: the backbone starts as Presto, the checkpoint reloads without the file."""
    from landprompt.embedder.models.presto import load_presto_encoder
    from landprompt.train import Trainer

    weights = Path(__file__).parents[1].parent / "shared" / "data" / "presto" / "default_model.pt"
    if not weights.is_file():
        pytest.skip(f"shared Presto weights not found at {weights}")
    paths, _ = planted_pairs_dataset
    raw = tiny_config(paths, tmp_path / "presto", run__steps=2, run__val_every=0, optim__warmup_steps=1)
    raw["model"] = {"presto_weights": str(weights), "arguments": {"pool_size": 3}}
    trainer = Trainer(config_from_dict(raw))
    presto = load_presto_encoder(weights).state_dict()
    backbone = trainer.model.encoder.backbone.state_dict()  # type: ignore[union-attr]
    assert backbone.keys() == presto.keys() and all(torch.equal(backbone[k], presto[k]) for k in presto)
    result = trainer.fit()
    assert result.step == 2 and np.isfinite(result.metrics["loss"])
    reloaded = load_checkpoint(result.checkpoint, device="cpu")  # type: ignore[arg-type]
    trained = trainer.model.encoder.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in reloaded.state_dict().items())
    assert not all(torch.equal(trained[f"backbone.{k}"], presto[k]) for k in presto)  # it learned
