"""The training loop in-process: convergence, metrics/TensorBoard files, resume, eval, NaN guard."""

from __future__ import annotations

import glob
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_tiny_task as task

from introspect import train


def tiny_config(**overrides):
    cfg = train.default_config()
    cfg.num_steps = 60
    cfg.batch_size = 64
    cfg.optimizer.lr = 1e-2
    cfg.log_every = 20
    cfg.checkpoint.every_steps = 20
    cfg.progress = False
    for k, v in overrides.items():
        node = cfg
        *parents, leaf = k.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return cfg


def run(workdir, cfg=None, **kw):
    return train.train(
        cfg or tiny_config(),
        init_fn=task.init_fn,
        loss_fn=task.loss_fn,
        data=kw.pop("data", task.make_data()),
        workdir=str(workdir),
        **kw,
    )


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def assert_bitwise_equal(a, b):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x.view(np.uint32), y.view(np.uint32))


def test_trains_writes_metrics_checkpoints_and_evals(tmp_path):
    calls = []

    def eval_fn(params, step):
        calls.append(step)
        return {"w_norm": float(jnp.linalg.norm(params["w1"]))}

    cfg = tiny_config(num_steps=150, eval_every=50, **{"checkpoint.keep": 2})
    result = run(tmp_path, cfg, eval_fn=eval_fn)
    assert result.resumed_from is None
    assert int(result.state.step) == 150
    assert result.metrics["accuracy"] > 0.8
    assert calls == [50, 100, 150]
    assert set(result.eval_metrics) == {"w_norm"}

    rows = train.read_metrics(str(tmp_path))
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == [20, 40, 60, 80, 100, 120, 140, 150]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert {"loss", "grad_norm", "lr", "accuracy", "steps_per_sec"} <= set(train_rows[0])
    assert [r["step"] for r in rows if "eval/w_norm" in r] == [50, 100, 150]
    assert os.path.exists(tmp_path / "hparams.json")
    steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
    assert steps == [140, 150]  # keep=2


def test_tensorboard_event_file_is_readable(tmp_path):
    import tensorboardX as tbx
    from tensorboardX.proto import event_pb2
    from tensorboardX.record_writer import masked_crc32c

    run(tmp_path, tiny_config(num_steps=40))
    (path,) = glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    data = open(path, "rb").read()
    events, i = [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i : i + 8])
        assert struct.unpack("<I", data[i + 8 : i + 12])[0] == masked_crc32c(data[i : i + 8])
        payload = data[i + 12 : i + 12 + n]
        assert struct.unpack("<I", data[i + 12 + n : i + 16 + n])[0] == masked_crc32c(payload)
        events.append(event_pb2.Event.FromString(payload))
        i += 16 + n
    assert events[0].file_version == "brain.Event:2"
    scalars = {(e.step, v.tag): v.simple_value for e in events[1:] for v in e.summary.value}
    rows = {r["step"]: r for r in train.read_metrics(str(tmp_path))}
    assert scalars[(40, "loss")] == pytest.approx(rows[40]["loss"], rel=1e-6)
    assert tbx is not None


def test_resume_continues_bitwise_and_finished_run_is_a_noop(tmp_path):
    full = run(tmp_path / "full", tiny_config(num_steps=60))
    # The same run stopped at 40 (its final checkpoint), then continued to 60.
    run(tmp_path / "split", tiny_config(num_steps=40))
    resumed = run(tmp_path / "split", tiny_config(num_steps=60))
    assert resumed.resumed_from == 40
    assert_bitwise_equal(full.state.params, resumed.state.params)
    assert_bitwise_equal(full.state.opt_state, resumed.state.opt_state)
    # metrics.jsonl: no step twice after the resume.
    steps = [r["step"] for r in train.read_metrics(str(tmp_path / "split")) if "loss" in r]
    assert steps == sorted(set(steps))
    again = run(tmp_path / "full", tiny_config(num_steps=60))
    assert again.resumed_from == 60
    assert_bitwise_equal(full.state.params, again.state.params)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    # Gradient descent on a * x^2 with a step far too large: |a| grows ~40x per step, the loss
    # overflows to inf after a few steps.
    def init_fn(rng):
        return {"a": jnp.ones(())}

    def loss_fn(params, batch, rng):
        return jnp.mean((params["a"] * batch["x"]) ** 2), {}

    data = {"x": np.full((64,), 2.0, np.float32)}
    cfg = tiny_config(num_steps=200, log_every=1, **{"checkpoint.every_steps": 2})
    cfg.optimizer.name = "sgd"
    cfg.optimizer.lr = 5.0
    with pytest.raises(train.NonFiniteError, match=r"NaN/inf at step (\d+)") as err:
        train.train(cfg, init_fn=init_fn, loss_fn=loss_fn, data=data, workdir=str(tmp_path))
    bad = int(err.value.args[0].split("at step ")[1].split(" ")[0])
    assert "last good checkpoint is step" in str(err.value)
    steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
    assert steps and max(steps) <= bad
    ckpt = train.Checkpointer(str(tmp_path / "checkpoints"))
    abstract = jax.eval_shape(
        lambda: train.init_train_state(
            {"a": jnp.ones(())}, train.make_optimizer(cfg)[0], jax.random.PRNGKey(0)
        )  # fmt: skip
    )
    step, state, _ = ckpt.restore_latest(abstract)
    ckpt.close()
    assert step == max(steps)
    assert np.isfinite(float(state.params["a"])) and int(state.bad_step) == -1
    rows = train.read_metrics(str(tmp_path))
    assert any(r.get("loss") in ("inf", "nan") for r in rows)


def test_guarded_step_skips_non_finite_update():
    tx = train.make_optimizer(train.resolve_config({"optimizer": {"name": "sgd", "lr": 0.1}}))[0]
    step = train.make_train_step(lambda p, b, r: (jnp.log(p["w"] * b), {}), tx)
    state = train.init_train_state({"w": jnp.ones(())}, tx, jax.random.PRNGKey(0))
    state, _ = step(state, jnp.float32(1.0), jax.random.PRNGKey(1))
    assert int(state.bad_step) == -1 and float(state.params["w"]) != 1.0
    w = float(state.params["w"])
    state, metrics = step(state, jnp.float32(-1.0), jax.random.PRNGKey(2))  # log(-1) = nan
    assert np.isnan(float(metrics["loss"]))
    assert int(state.bad_step) == 1 and float(state.params["w"]) == w and int(state.step) == 2


def test_batcher_is_deterministic_and_resumable():
    data = {"i": np.arange(100)}
    b = train.Batcher(data, 32, seed=3)
    first = [next(b)["i"] for _ in range(7)]  # 3 steps per epoch (4 rows dropped)
    epoch0 = np.concatenate(first[:3])
    assert len(np.unique(epoch0)) == 96
    state = b.get_state()
    later = [next(b)["i"] for _ in range(3)]
    c = train.Batcher(data, 32, seed=3)
    c.set_state(state)
    for x, y in zip(later, [next(c)["i"] for _ in range(3)], strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="seed=3"):
        train.Batcher(data, 32, seed=4).set_state(state)
    with pytest.raises(ValueError, match="num_examples"):
        train.Batcher({"i": np.arange(99)}, 32, seed=3).set_state(state)
    # Two (four) hosts each read half (a quarter) of every global batch; in process order the
    # pieces are the one-process batch row for row (the same global array on any process count).
    for count in (2, 4):
        parts = [train.Batcher(data, 32, seed=3, process_index=p, process_count=count)
                 for p in range(count)]  # fmt: skip
        for step in range(3):
            together = np.concatenate([next(h)["i"] for h in parts])
            np.testing.assert_array_equal(together, first[step])
    with pytest.raises(ValueError, match="larger than the dataset"):
        train.Batcher(data, 128)


def test_bad_batch_shape_from_iterator_is_a_clear_error(tmp_path):
    class Iterator:
        def __next__(self):
            return {"x": np.zeros((10, 16), np.float32), "y": np.zeros((10,), np.float32)}

        def get_state(self):
            return {}

        def set_state(self, state):
            pass

    with pytest.raises(ValueError, match=r"expected \[64, ...\]"):
        run(tmp_path, data=Iterator())


def test_batch_larger_than_data_names_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"train\.batch_size=64 is larger than the training data"):
        run(tmp_path, data={k: v[:40] for k, v in task.make_data().items()})


def test_device_resident_and_host_fed_data_give_identical_params(tmp_path):
    on_device = run(tmp_path / "device", tiny_config(num_steps=30))
    from_host = run(tmp_path / "host", tiny_config(num_steps=30, device_data_max_mb=0))
    assert_bitwise_equal(on_device.state.params, from_host.state.params)


def test_steps_per_dispatch_matches_one_step_per_call(tmp_path):
    one = run(tmp_path / "one", tiny_config(num_steps=60))
    # 7 does not divide log_every / checkpoint.every_steps (20): dispatches end there too.
    for name, extra in [("k7", {}), ("k7host", {"device_data_max_mb": 0})]:
        cfg = tiny_config(num_steps=60, steps_per_dispatch=7, **extra)
        fused = run(tmp_path / name, cfg)
        for a, b in zip(leaves(one.state.params), leaves(fused.state.params), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
        rows = [r for r in train.read_metrics(str(tmp_path / name)) if "loss" in r]
        ref = [r for r in train.read_metrics(str(tmp_path / "one")) if "loss" in r]
        assert [r["step"] for r in rows] == [r["step"] for r in ref] == [20, 40, 60]
        np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref], rtol=1e-5)
        steps = sorted(int(d) for d in os.listdir(tmp_path / name / "checkpoints") if d.isdigit())
        assert steps == [20, 40, 60]


def test_setup_and_fit_with_a_custom_hook_see_exact_steps(tmp_path):
    cfg = tiny_config(num_steps=45, steps_per_dispatch=10, **{"checkpoint.every_steps": 0})
    state, run_ = train.setup(cfg, task.init_fn, data=task.make_data(), workdir=str(tmp_path))
    seen = []

    def fn(step, state, metrics, last):
        seen.append((step, int(state.step), int(metrics["loss"].shape[0]), last))

    hook = train.Hook(every=15, fn=fn)
    step_fn = run_.compile(train.make_train_step(task.loss_fn, run_.tx, run_.schedule))
    try:
        state = train.fit(state, step_fn, run_.feed, [hook], num_steps=45, steps_per_dispatch=10)
    finally:
        run_.close()
    # dispatch ends: multiples of 10 and of 15, and 45
    assert [s for s, *_ in seen] == [10, 15, 20, 30, 40, 45]
    assert all(s == t for s, t, *_ in seen)
    assert [n for *_, n, _ in seen] == [10, 5, 5, 10, 10, 5]
    assert [last for *_, last in seen] == [False] * 5 + [True]
    assert int(state.step) == 45


def test_time_based_checkpoints_use_orbax_policy(tmp_path):
    # every_seconds without every_steps: orbax's ContinuousCheckpointingPolicy saves at the first
    # step boundary when there is no checkpoint yet, then not again within the interval; the
    # loop always saves the final step.
    cfg = tiny_config(
        num_steps=30, **{"checkpoint.every_steps": 0, "checkpoint.every_seconds": 1e6}
    )
    run(tmp_path, cfg)
    steps = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
    assert steps == [1, 30]
