"""Checkpoints: corrupt, partial, tampered and incompatible checkpoint directories."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import train_tiny_task as task
from test_train_loop import assert_bitwise_equal, run, tiny_config

from introspect import train


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 60-step run, and a 40-step run to damage (checkpoints 10..40)."""
    root = tmp_path_factory.mktemp("ckpt")
    full = run(root / "full", tiny_config(num_steps=60))
    cfg = tiny_config(num_steps=40, **{"checkpoint.every_steps": 10, "checkpoint.keep": 5})
    run(root / "base", cfg)
    return root, full


def copy_base(reference, tmp_path):
    root, _ = reference
    shutil.copytree(root / "base", tmp_path / "run")
    return tmp_path / "run"


def state_files(step_dir):
    out = []
    for dirpath, _, files in os.walk(step_dir / "state"):
        out += [os.path.join(dirpath, f) for f in files if "/d/" in os.path.join(dirpath, f) + "/"]
    return out


def resume(workdir):
    return run(workdir, tiny_config(num_steps=60))


def test_garbled_array_files_fall_back_to_previous_step(reference, tmp_path):
    wd = copy_base(reference, tmp_path)
    files = state_files(wd / "checkpoints" / "40")
    assert files
    for f in files:
        size = os.path.getsize(f)
        with open(f, "r+b") as fh:
            fh.seek(size // 2)
            fh.write(b"\x00garbage\xff" * 4)
    result = resume(wd)
    assert result.resumed_from == 30
    assert os.path.isdir(tmp_path / "run" / "checkpoints.corrupt" / "40-0")
    assert_bitwise_equal(reference[1].state.params, result.state.params)


def test_partial_checkpoint_falls_back(reference, tmp_path):
    wd = copy_base(reference, tmp_path)
    shutil.rmtree(wd / "checkpoints" / "40" / "state")
    # and an unfinished save left by a kill (orbax temporary directory)
    os.makedirs(wd / "checkpoints" / "50.orbax-checkpoint-tmp-1234" / "state")
    result = resume(wd)
    assert result.resumed_from == 30
    assert_bitwise_equal(reference[1].state.params, result.state.params)


def test_tampered_values_are_detected_by_the_fingerprint(reference, tmp_path):
    wd = copy_base(reference, tmp_path)
    meta_path = wd / "checkpoints" / "40" / "meta" / "metadata"
    meta = json.loads(meta_path.read_text())
    meta["fingerprint"][0][0] ^= 1  # as if one bit of one array had flipped
    meta_path.write_text(json.dumps(meta))
    result = resume(wd)
    assert result.resumed_from == 30


def test_no_usable_checkpoint_is_a_clear_error(reference, tmp_path):
    wd = copy_base(reference, tmp_path)
    for step in ("10", "20", "30", "40"):
        shutil.rmtree(wd / "checkpoints" / step / "state")
    with pytest.raises(
        train.CheckpointError, match=r"no usable checkpoint in .*step 40: .*step 10"
    ):
        resume(wd)
    # nothing was moved away: a rerun gives the same error, never a silent fresh start
    with pytest.raises(train.CheckpointError):
        resume(wd)


def test_checkpoint_of_another_model_is_rejected(reference, tmp_path):
    wd = copy_base(reference, tmp_path)

    def bigger_init(rng):
        params = task.init_fn(rng)
        params["w1"] = np.zeros((task.DIM, 2 * task.HIDDEN), np.float32)
        return params

    with pytest.raises(ValueError, match=r"different train state .*w1"):
        train.train(
            tiny_config(num_steps=60),
            init_fn=bigger_init,
            loss_fn=task.loss_fn,
            data=task.make_data(),
            workdir=str(wd),
        )
