"""Unit tests of landprompt.train: config, loss, queue, training state, sampler, augmentations, metrics."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from landprompt.errors import BadInputError
from landprompt.train.config import AugmentConfig, TrainConfig, config_from_dict, load_config
from landprompt.train.data import (
    EVAL_EPOCH,
    PairDataset,
    StepBatchSampler,
    augment,
    counter_uniform,
    make_loader,
    shard_range,
)
from landprompt.train.loop import cosine_lr
from landprompt.train.loss import ContrastiveLoss, LogitScale, TargetQueue
from landprompt.train.metrics import MetricsLogger, read_metrics, retrieval_recall
from landprompt.train.state import capture_rng, flatten, restore_rng, unflatten
from landprompt.train.synthetic import planted_pairs

EXAMPLE = Path(__file__).parents[1] / "configs" / "train_example.yaml"
PACKAGED_EXAMPLE = Path(__file__).parents[1] / "src" / "landprompt" / "examples" / "train_example.yaml"
MINIMAL = {"run": {"out": "runs/x"}, "data": {"store": "s", "catalog": "c", "photo_embeddings": "p"}}


def with_key(path: str, value: Any) -> dict[str, Any]:
    raw = yaml.safe_load(yaml.safe_dump(MINIMAL))
    section, key = path.split(".")
    raw.setdefault(section, {})[key] = value
    return raw


# ------------------------------------------------------------------------------------------------ config


def test_example_config_parses_and_lists_every_key() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, TrainConfig)
    raw = yaml.safe_load(EXAMPLE.read_text())
    for section in ("run", "data", "augment", "model", "loss", "optim"):
        cls = type(getattr(config, section))
        names = {f.name for f in dataclasses.fields(cls)}
        assert names == set(raw[section]), f"{section}: example lists {set(raw[section])}, dataclass {names}"
        for name in names:  # every key is commented in the example
            assert re.search(rf"^\s+{name}:.*#", EXAMPLE.read_text(), re.MULTILINE), f"{section}.{name}"


def test_example_values_are_the_defaults() -> None:
    example = load_config(EXAMPLE)
    defaults = config_from_dict({"run": {"out": "runs/example"}, "data": example.to_dict()["data"]})
    assert example.to_dict() | {"model": {}} == defaults.to_dict() | {"model": {}}
    assert example.model.name == defaults.model.name and example.model.presto_weights is None


def test_overrides_and_numeric_strings(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL | {"optim": {"lr": "1e-3"}}))
    config = load_config(path, ["optim.lr=2e-3", "run.resume=null", "model.arguments={pool_size: 3}"])
    assert config.optim.lr == 2e-3 and config.run.resume is None
    assert config.model.arguments == {"pool_size": 3}
    assert load_config(path).optim.lr == 1e-3


def test_an_override_fills_an_empty_section(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL | {"augment": None}))  # ``augment:`` with no keys
    config = load_config(path, ["augment.month_dropout=0.2"])
    assert config.augment.month_dropout == 0.2 and config.augment.sensor_dropout == 0.1


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        (with_key("optim.lrr", 1e-3), r"unknown key optim\.lrr.*did you mean optim\.lr"),
        (with_key("optim.lr", -1), r"optim\.lr must be > 0"),
        (with_key("optim.lr", "fast"), r"optim\.lr must be a number"),
        (with_key("data.batch_size", 2.5), r"data\.batch_size must be an integer"),
        (with_key("data.batch_size", True), r"data\.batch_size must be an integer"),
        (with_key("data.target", "median"), r"data\.target must be one of mean, sample"),
        (with_key("augment.month_dropout", 1.0), r"augment\.month_dropout must be < 1"),
        (with_key("run.precision", "fp16"), r"run\.precision must be one of"),
        (with_key("optim.betas", [0.9]), r"optim\.betas must be a list of 2"),
        (with_key("optim.betas", [0.9, 1.5]), r"optim\.betas must both lie in \[0, 1\)"),
        (with_key("data.use_latlon", "yes"), r"data\.use_latlon must be true or false"),
        (with_key("model.arguments", [1, 2]), r"model\.arguments must be a mapping"),
        (with_key("model.arguments", {"pretrained": False}), r"model\.arguments must not set"),
        (with_key("model.arguments", {"bottleneck": 0}), r"model\.arguments\.bottleneck must be a whole"),
        (with_key("model.arguments", {"bottleneck": 64, "head": "mlp"}), r"bottleneck needs head: linear"),
        (with_key("optim.min_lr", 1.0), r"optim\.min_lr .* must not exceed optim\.lr"),
        (with_key("optim.warmup_steps", 10**6), r"optim\.warmup_steps .* must not exceed run\.steps"),
        (with_key("loss.max_logit_scale", 5.0), r"loss\.max_logit_scale .* below 1 / loss\.init_temperature"),
        ({"run": {"out": "x"}}, r"missing section data"),
        ({"run": {}, "data": MINIMAL["data"]}, r"missing key run\.out"),
        (MINIMAL | {"optimizer": {}}, r"unknown key optimizer.*did you mean optim"),
        (MINIMAL | {"loss": [1]}, r"loss must be a mapping"),
    ],
)
def test_config_errors_name_the_key(raw: dict[str, Any], pattern: str) -> None:
    with pytest.raises(BadInputError, match=pattern):
        config_from_dict(raw)


def test_bottleneck_config_builds_a_head_with_an_exact_64_basis() -> None:
    from landprompt.embedder.models import create_encoder

    config = config_from_dict(with_key("model.arguments", {"head": "linear", "bottleneck": 64}))
    encoder = create_encoder(config.model.name, clip_dim=512, pretrained=False, **config.model.arguments)
    basis = encoder.head_basis()
    assert basis is not None and basis.rank == 64 and basis.dim == 512 and basis.kind == "linear_head"


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(BadInputError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(MINIMAL))
    with pytest.raises(BadInputError, match=r"must look like section\.key=value"):
        load_config(tmp_path / "ok.yaml", ["optim.lr"])
    with pytest.raises(BadInputError, match=r"run\.out is not a section"):
        load_config(tmp_path / "ok.yaml", ["run.out.x=1"])


@pytest.mark.parametrize(
    "path", [*sorted((EXAMPLE.parents[1] / "configs").glob("*.yaml")), PACKAGED_EXAMPLE], ids=lambda p: p.name
)
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    assert config.run.steps > config.optim.warmup_steps and config.model.arguments["head"] == "linear"


def test_schema_command_describes_every_key_of_the_example() -> None:
    from typer.testing import CliRunner

    from landprompt.cli import app

    result = CliRunner().invoke(app, ["train", "--schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["required"] == ["run", "data"] and schema["additionalProperties"] is False
    example, config = yaml.safe_load(EXAMPLE.read_text()), load_config(EXAMPLE)
    for section, values in example.items():
        model = schema["$defs"][type(getattr(config, section)).__name__]
        assert model["additionalProperties"] is False and set(model["properties"]) == set(values)
        for key, value in values.items():
            spec = model["properties"][key]
            assert spec["description"], f"{section}.{key} has no description"
            if "default" in spec and key != "arguments":  # the example's values are the defaults
                assert spec["default"] == value, f"{section}.{key}"
    assert schema["$defs"]["OptimConfig"]["properties"]["lr"]["exclusiveMinimum"] == 0
    assert schema["$defs"]["DataConfig"]["properties"]["target"]["enum"] == ["mean", "sample"]


# -------------------------------------------------------------------------------------------------- loss


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def test_loss_equals_open_clip_without_queue() -> None:
    from open_clip.loss import ClipLoss

    torch.manual_seed(0)
    sat, photo = unit(torch.randn(8, 16)), unit(torch.randn(8, 16))
    scale = torch.tensor(10.0)
    ours = ContrastiveLoss(16)(sat, photo, scale)
    assert torch.allclose(ours, ClipLoss()(sat, photo, scale))


def test_queue_is_a_fifo_ring_and_adds_negatives() -> None:
    queue = TargetQueue(5, 2)
    queue.push(torch.arange(6.0).view(3, 2))
    assert len(queue.negatives()) == 3
    queue.push(torch.arange(6.0, 14.0).view(4, 2))  # 7 pushed, capacity 5: rows 2..6 remain
    assert sorted(queue.negatives()[:, 0].tolist()) == [4.0, 6.0, 8.0, 10.0, 12.0]
    assert int(queue.pointer) == 2 and int(queue.count) == 5

    torch.manual_seed(0)
    sat, photo = unit(torch.randn(4, 8)), unit(torch.randn(4, 8))
    loss = ContrastiveLoss(8, queue_size=16)
    scale = torch.tensor(10.0)
    first = loss(sat, photo, scale)  # empty queue: plain InfoNCE; then the targets are queued
    assert int(loss.queue.count) == 4
    second = loss(sat, photo, scale, enqueue=False)  # the queue now holds the positives as negatives too
    assert second > first and int(loss.queue.count) == 4


def test_logit_scale_clamps() -> None:
    scale = LogitScale(0.07, max_scale=100.0)
    assert math.isclose(float(scale().detach()), 1 / 0.07, rel_tol=1e-6)
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    scale.clamp_()
    assert math.isclose(float(scale().detach()), 100.0, rel_tol=1e-6)
    assert not LogitScale(learnable=False).log_scale.requires_grad


def test_cosine_schedule() -> None:
    assert cosine_lr(0, 1.0, 0.1, 10, 100) == pytest.approx(0.1)
    assert cosine_lr(9, 1.0, 0.1, 10, 100) == pytest.approx(1.0)
    assert cosine_lr(10, 1.0, 0.1, 10, 100) == pytest.approx(1.0)
    assert cosine_lr(55, 1.0, 0.1, 10, 100) == pytest.approx(0.55)
    assert cosine_lr(100, 1.0, 0.1, 10, 100) == pytest.approx(0.1)
    assert cosine_lr(0, 1.0, 0.0, 0, 100) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------- state


def test_training_state_round_trips_exactly() -> None:
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": capture_rng(), "step": 3, "nested": {1: (2.5, None)}}
    tensors: dict[str, torch.Tensor] = {}
    document = flatten(state, tensors)
    import json

    back = unflatten(json.loads(json.dumps(document)), tensors)
    assert back["step"] == 3 and back["nested"] == {1: (2.5, None)}
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    for key, value in state["optimizer"]["state"][0].items():
        assert torch.equal(back["optimizer"]["state"][0][key], value)
    restored = torch.optim.AdamW(model.parameters())
    restored.load_state_dict(back["optimizer"])
    assert restored.param_groups[0]["betas"] == (0.9, 0.98)

    expected = (torch.rand(3), np.random.rand(3), __import__("random").random())
    restore_rng(back["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert __import__("random").random() == expected[2]


# ------------------------------------------------------------------------------------------- data, order


def test_sampler_shards_resumes_and_covers_each_epoch() -> None:
    single = StepBatchSampler(50, 8, seed=3, steps=12)
    steps = list(single)
    assert len(steps) == 12 and single.batches_per_epoch == 6
    first_epoch = [i for batch in steps[:6] for _, i in batch]
    assert len(set(first_epoch)) == 48  # a permutation, the incomplete last batch dropped
    assert {e for batch in steps[6:] for e, _ in batch} == {1}
    ranks = [list(StepBatchSampler(50, 8, seed=3, steps=12, rank=r, world_size=2)) for r in range(2)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == steps
    assert list(StepBatchSampler(50, 8, seed=3, start_step=5, steps=12)) == steps[5:]
    assert list(StepBatchSampler(50, 8, seed=4, steps=12)) != steps
    with pytest.raises(BadInputError, match="divisible by the number of processes"):
        StepBatchSampler(50, 9, steps=1, world_size=2)
    with pytest.raises(BadInputError, match=r"fewer than data\.batch_size"):
        StepBatchSampler(5, 8, steps=1)
    assert shard_range(10, 1, 3) == (range(3, 7), [3, 4, 3])


def test_counter_uniform_depends_on_the_key_only() -> None:
    a = counter_uniform(0, 1, np.array([5, 9, 2]), 4)
    b = counter_uniform(0, 1, np.array([2, 5]), 4)
    assert np.array_equal(a[[2, 0]], b)
    assert not np.array_equal(a, counter_uniform(0, 2, np.array([5, 9, 2]), 4))
    assert a.min() >= 0.0 and a.max() < 1.0
    many = counter_uniform(7, 0, np.arange(20_000), 1)
    assert abs(many.mean() - 0.5) < 0.01


def test_augment_never_removes_every_observation() -> None:
    rng = np.random.default_rng(0)
    s2 = rng.uniform(100, 5000, (64, 12, 10, 3, 3)).astype(np.float32)
    s1 = rng.uniform(-20, -5, (64, 12, 2, 3, 3)).astype(np.float32)
    s1[:8] = np.nan  # S2 only: sensor dropout leaves these alone
    s2[8:16, 1:] = np.nan  # one S2 month only
    heavy = AugmentConfig(month_dropout=0.99, sensor_dropout=1.0, pixel_dropout=0.99)
    out2, out1 = augment(s2.copy(), s1.copy(), heavy, counter_uniform(0, 0, np.arange(64), 12 + 9 + 2))
    observed = ~np.isnan(out2).all(axis=(1, 2, 3, 4)) | ~np.isnan(out1).all(axis=(1, 2, 3, 4))
    assert observed.all()
    assert (~np.isnan(out2[:8])).any(axis=(1, 2, 3, 4)).all()
    assert np.isnan(out1[16:]).all() or np.isnan(out2[16:]).all(axis=(1, 2, 3, 4)).any()
    off = AugmentConfig(0.0, 0.0, 0.0)
    same2, same1 = augment(s2.copy(), s1.copy(), off, counter_uniform(0, 0, np.arange(64), 23))
    assert np.array_equal(same2, s2, equal_nan=True) and np.array_equal(same1, s1, equal_nan=True)


def test_augment_rates() -> None:
    s2 = np.ones((2000, 12, 10, 3, 3), np.float32)
    s1 = np.ones((2000, 12, 2, 3, 3), np.float32)
    config = AugmentConfig(month_dropout=0.2, sensor_dropout=0.3, pixel_dropout=0.1)
    out2, out1 = augment(s2, s1, config, counter_uniform(1, 0, np.arange(2000), 23))
    no_s2 = np.isnan(out2).all(axis=(1, 2, 3, 4)).mean()
    no_s1 = np.isnan(out1).all(axis=(1, 2, 3, 4)).mean()
    assert no_s2 == pytest.approx(0.15, abs=0.03) and no_s1 == pytest.approx(0.15, abs=0.03)
    kept = np.where(np.isnan(out1).all(axis=(1, 2, 3, 4))[:, None], out2[:, :, 0, 1, 1], out1[:, :, 0, 1, 1])
    assert np.isnan(kept).mean() == pytest.approx(0.2 + 0.8 * 0.1, abs=0.02)


def test_dataset_batches_do_not_depend_on_workers() -> None:
    pairs = planted_pairs(48, classes=4, window=5, dim=8)
    dataset = PairDataset(pairs.samples, pairs.targets(), window=3, augment=AugmentConfig(), target="sample")
    batches = list(StepBatchSampler(48, 8, seed=1, steps=4))
    inline = list(make_loader(dataset, batches))
    workers = list(make_loader(dataset, batches, num_workers=2))
    for a, b in zip(inline, workers, strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.mask, b.mask) and torch.equal(a.target, b.target)
    batch = inline[0]
    assert batch.x.shape == (8, 9, 12, 17) and batch.month.shape == (8, 12) and batch.target.shape == (8, 8)
    assert torch.allclose(batch.target.norm(dim=1), torch.ones(8))
    again = dataset.__getitems__(batches[0])
    assert torch.equal(again.x, batch.x)
    plain = dataset.__getitems__([(EVAL_EPOCH, i) for _, i in batches[0]])
    assert plain.mask.float().mean() < batch.mask.float().mean()  # no augmentation at evaluation
    assert torch.allclose(plain.target, torch.from_numpy(pairs.targets().mean(batch.index.numpy())))


# ----------------------------------------------------------------------------------------------- metrics


def test_retrieval_recall() -> None:
    sat = torch.eye(4)
    photo = torch.eye(4)[[0, 1, 3, 2]]  # items 2 and 3 swapped
    recall = retrieval_recall(sat, photo, (1, 2))
    assert recall == {"sat2photo_r1": 0.5, "sat2photo_r2": 1.0, "photo2sat_r1": 0.5, "photo2sat_r2": 1.0}
    noisy = unit(torch.eye(4) + 0.1)
    assert retrieval_recall(noisy, torch.eye(4))["sat2photo_r1"] == 1.0


def test_metrics_log_truncates_on_resume(tmp_path: Path) -> None:
    log = MetricsLogger(tmp_path, tensorboard="off")
    for step in (1, 2, 3):
        log.log(step, {"loss": 1.0 / step})
    log.close()
    MetricsLogger(tmp_path, tensorboard="off", resume_step=2).close()
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1.0, 2.0] and rows[1]["loss"] == 0.5
    with pytest.raises(KeyError):
        MetricsLogger(tmp_path, tensorboard="off").log(1, {"nope": 1.0})
