"""The shared training loop: exact resume, NaN guard, checkpoints, budgets, DDP (gloo)."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nixdistill.config import TrainConfig
from nixdistill.runs import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    step_checkpoints,
)
from nixdistill.distill.loop import Trainer
from nixdistill.distill.rng import capture_rng_state, restore_rng_state
from nixdistill.distill.toy import ToyStage

N_ITEMS = 24  # 6 batches of 4 per epoch: runs below cross epoch boundaries


def _cfg(**kw) -> TrainConfig:
    base = dict(batch_size=4, log_interval=1, eval_interval=1000, checkpoint_interval=1000,
                keep_checkpoints=2, seed=7, lr_decay=0.5, learning_rate=1e-2)
    base.update(kw)
    return TrainConfig(**base)


def _fit(run_dir: Path, cfg: TrainConfig, resume: bool = False, **stage_kw) -> tuple:
    stage = ToyStage(cfg, n_items=N_ITEMS, **stage_kw)
    result = Trainer(stage, run_dir, cfg, "cpu", resume=resume, config_dict={"train": {}},
                     meta={"who": "test"}).fit()
    return stage, result


def test_resume_is_exact(tmp_path):
    full_steps, cut = 11, 7  # cut inside the second epoch, after two LR decays
    full, _ = _fit(tmp_path / "full", _cfg(max_steps=full_steps))
    first, r1 = _fit(tmp_path / "cut", _cfg(max_steps=cut))
    assert r1 == (cut, "max_steps", tmp_path / "cut" / "checkpoints" / "last.pt")
    second, r2 = _fit(tmp_path / "cut", _cfg(max_steps=full_steps), resume=True)
    assert r2.step == full_steps
    assert first.losses == full.losses[:cut]
    assert second.losses == full.losses[cut:]
    for a, b in zip(full.net.parameters(), second.net.parameters()):
        assert torch.equal(a, b)
    ckpt = load_checkpoint(tmp_path / "cut")
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == (11, 1, 5)
    assert ckpt["schedulers"]["net"]["last_epoch"] == 1
    assert json.loads((tmp_path / "cut" / "config.json").read_text()) == {"train": {}}
    assert list((tmp_path / "cut" / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_at_epoch_boundary_is_exact(tmp_path):
    per_epoch = N_ITEMS // 4
    full, _ = _fit(tmp_path / "full", _cfg(max_steps=per_epoch + 2))
    _fit(tmp_path / "cut", _cfg(max_steps=per_epoch))
    second, _ = _fit(tmp_path / "cut", _cfg(max_steps=per_epoch + 2), resume=True)
    assert second.losses == full.losses[per_epoch:]


def test_nan_loss_skips_step_and_counts(tmp_path):
    cfg = _cfg(max_steps=1)
    stage = ToyStage(cfg, n_items=N_ITEMS, nan_at_steps=(0,))
    before = [p.detach().clone() for p in stage.net.parameters()]
    result = Trainer(stage, tmp_path / "nan", cfg, "cpu").fit()
    assert result.step == 1
    for a, b in zip(before, stage.net.parameters()):
        assert torch.equal(a, b)
    assert load_checkpoint(result.checkpoint)["nan_skips"] == 1
    # the next, finite step does update the parameters
    stage2, _ = _fit(tmp_path / "nan", _cfg(max_steps=2), resume=True, nan_at_steps=(0,))
    assert any(not torch.equal(a, b) for a, b in zip(before, stage2.net.parameters()))
    assert load_checkpoint(tmp_path / "nan")["nan_skips"] == 1


def test_checkpoint_cadence_keep_and_eval(tmp_path):
    cfg = _cfg(max_steps=9, checkpoint_interval=2, eval_interval=4, keep_checkpoints=2)
    stage, result = _fit(tmp_path, cfg)
    steps = [s for s, _ in step_checkpoints(tmp_path)]
    assert steps == [8, 9]  # every 2 steps plus the final one, pruned to 2
    assert latest_checkpoint(tmp_path) == result.checkpoint
    assert stage.evaluations == 3  # steps 4, 8 and the end
    ckpt = torch.load(result.checkpoint, weights_only=True)
    assert ckpt["format"] == "nixdistill-train" and ckpt["stage"] == "toy"
    assert ckpt["stage_state"] == {"evaluations": 3}
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_keep_steps_writes_and_keeps_those_checkpoints(tmp_path):
    cfg = _cfg(max_steps=9, checkpoint_interval=4, keep_checkpoints=1, keep_steps=[3])
    _fit(tmp_path, cfg)
    # step 3 is off the cadence but written and never pruned; 4 and 8 are pruned to the last
    assert [s for s, _ in step_checkpoints(tmp_path)] == [3, 9]
    assert load_checkpoint(tmp_path / "checkpoints" / "step_00000003.pt")["step"] == 3


def test_eval_at_start_adds_a_step_zero_baseline(tmp_path):
    cfg = _cfg(max_steps=4, eval_interval=4, eval_at_start=True)
    stage, _ = _fit(tmp_path, cfg)
    assert stage.evaluations == 2  # step 0 and step 4 (the end coincides with step 4)


def test_max_minutes_stops_cleanly(tmp_path):
    stage, result = _fit(tmp_path, _cfg(max_minutes=0.0))
    assert result.reason == "max_minutes"
    assert result.step == 0 and result.checkpoint.is_file()


def test_resume_errors(tmp_path):
    with pytest.raises(CheckpointError, match="cannot resume: no checkpoint"):
        _fit(tmp_path / "empty", _cfg(max_steps=1), resume=True)
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(CheckpointError, match="not a nixdistill"):
        load_checkpoint(bad)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError):
        load_checkpoint(garbage)
    _fit(tmp_path / "run", _cfg(max_steps=1))
    other = ToyStage(_cfg(max_steps=2), n_items=N_ITEMS)
    other.name = "other"
    with pytest.raises(CheckpointError, match="belongs to stage"):
        Trainer(other, tmp_path / "run", _cfg(max_steps=2), "cpu", resume=True).fit()


def test_rng_state_roundtrip_weights_only(tmp_path):
    import random

    state = capture_rng_state()
    save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(loaded)
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_fp16_on_cpu_falls_back_to_bf16(tmp_path):
    cfg = dataclasses.replace(_cfg(max_steps=2), precision="fp16")
    with pytest.warns(UserWarning, match="bf16"):
        stage, result = _fit(tmp_path, cfg)
    assert result.step == 2 and all(np.isfinite(stage.losses))



def test_ddp_two_processes_gloo(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "nixdistill.distill.toy", "--run-dir", str(tmp_path), "--max-steps", "3"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "params_rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "params_rank1.pt", weights_only=True)
    assert r0["step"] == r1["step"] == 3
    assert r0["losses"] != r1["losses"]  # each rank saw its own shard
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2


@pytest.mark.parametrize("gamma", [0.0, 1.0, 3.0])
def test_power_ema_weighs_step_tau_as_a_power_of_tau(gamma):
    """After T updates the weights of step tau count (tau^(g+1) - (tau-1)^(g+1)) / T^(g+1):
    the plain mean for g = 0, ~tau^g in general."""
    from torch.optim.swa_utils import AveragedModel

    from nixdistill.distill.schedules import power_ema

    net = torch.nn.Linear(1, 1, bias=False)
    avg = AveragedModel(net, multi_avg_fn=power_ema(gamma))
    values = torch.arange(1, 9, dtype=torch.float32) ** 2  # the weight after steps 1..8
    for v in values:
        net.weight.data.fill_(float(v))
        avg.update_parameters(net)
    tau = torch.arange(1, 9, dtype=torch.float64)
    w = tau ** (gamma + 1) - (tau - 1) ** (gamma + 1)
    expected = float((w * values.double()).sum() / w.sum())
    assert float(avg.module.weight.detach()) == pytest.approx(expected, rel=1e-5)


def test_weight_average_is_checkpointed_evaluated_and_resumes_exactly(tmp_path):
    full_steps, cut = 11, 7
    full, _ = _fit(tmp_path / "full", _cfg(max_steps=full_steps, ema_power=1.0))
    _fit(tmp_path / "cut", _cfg(max_steps=cut, ema_power=1.0))
    second, _ = _fit(tmp_path / "cut", _cfg(max_steps=full_steps, ema_power=1.0), resume=True)
    assert second.losses == full.losses[cut:]
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut")
    assert a["averaged_updates"] == b["averaged_updates"] == {"net": full_steps}
    for key in ("models", "live_models"):
        for name, tensor in a[key]["net"].items():
            torch.testing.assert_close(b[key]["net"][name], tensor, rtol=0, atol=0)
    # export reads "models": the average, not the last weights (which resume reads)
    live, averaged = a["live_models"]["net"], a["models"]["net"]
    assert not torch.equal(live["0.weight"], averaged["0.weight"])
    for p, (name, tensor) in zip(full.net.parameters(), live.items()):
        assert torch.equal(p, tensor)
    # the final evaluation scored the average, and the live weights were put back
    x, y = full.train_set.x, full.train_set.y
    net = copy.deepcopy(full.net).eval()
    net.load_state_dict(averaged)
    with torch.no_grad():
        mse = float(torch.nn.functional.mse_loss(net(x), y))
    assert full.last_eval["mse"] == pytest.approx(mse)


def test_cooldown_factor_is_flat_then_linear_to_zero():
    from nixdistill.distill.schedules import cooldown_factor

    steps = _cfg(max_steps=100, lr_cooldown=0.25)
    assert [cooldown_factor(s, 0.0, steps) for s in (0, 74, 75, 90, 100, 120)] == \
        pytest.approx([1.0, 1.0, 1.0, 0.4, 0.0, 0.0])
    minutes = _cfg(max_minutes=10.0, lr_cooldown=1.0)  # trained seconds drive it
    assert cooldown_factor(0, 150.0, minutes) == pytest.approx(0.75)
    both = _cfg(max_steps=100, max_minutes=10.0, lr_cooldown=0.5)  # the nearer budget wins
    assert cooldown_factor(10, 450.0, both) == pytest.approx(0.5)
    assert cooldown_factor(50, 0.0, _cfg(max_steps=100)) == 1.0  # no cooldown
    with pytest.raises(Exception, match="lr_cooldown"):
        _cfg(lr_cooldown=0.0)


class _CrashingToy(ToyStage):
    """Interrupted (Ctrl-C) just before step ``crash_at``, as a crash the checkpoint survives."""

    crash_at = 5

    def training_step(self, batch, ctx):
        if ctx.step == self.crash_at:
            raise KeyboardInterrupt
        return super().training_step(batch, ctx)


def test_cooldown_sets_the_lr_and_resumes_exactly(tmp_path):
    # the schedule depends on the budget, so the interrupted run keeps the same max_steps
    full_steps, cut = 8, _CrashingToy.crash_at  # 6 batches per epoch: one decay (0.5) first
    cfg = _cfg(max_steps=full_steps, lr_cooldown=0.5)
    full, _ = _fit(tmp_path / "full", cfg)
    plain, _ = _fit(tmp_path / "plain", _cfg(max_steps=full_steps))
    crashed = Trainer(_CrashingToy(cfg, n_items=N_ITEMS), tmp_path / "cut", cfg, "cpu",
                      config_dict={"train": {}}).fit()
    assert (crashed.step, crashed.reason) == (cut, "interrupted")
    second, _ = _fit(tmp_path / "cut", cfg, resume=True)
    assert second.losses == full.losses[cut:]
    assert full.losses[:5] == plain.losses[:5]  # updates 1-4 at the full lr: same first 5 losses
    assert full.losses[5:] != plain.losses[5:]
    ckpt = load_checkpoint(tmp_path / "full")
    # the lr of step 8: 1e-2 * 0.5 (one epoch) * (1 - 7/8) / 0.5
    assert ckpt["optimizers"]["net"]["param_groups"][0]["lr"] == pytest.approx(1.25e-3)
    assert ckpt["trained_seconds"] > 0.0
