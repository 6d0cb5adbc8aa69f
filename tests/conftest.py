"""Shared test setup: one place for real-model fixtures so each model is loaded once per session."""

import gc
import os

import pytest

# Keep JAX on the CPU in tests and quiet about it; sharding tests spawn their own subprocess with
# XLA_FLAGS=--xla_force_host_platform_device_count=8.
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _share_compilations() -> None:
    """One persistent XLA compilation cache per `pytest` run (a fresh directory, removed at
    exit), shared through the environment by the xdist workers and every subprocess the tests
    start: a program compiled in one process (the embedded model's generation at a given
    shape, a killed-then-restarted training run, the 2 x 4 / 1 x 8 / 1 x 1 runs of the same
    step) is read back by the others instead of compiled again. A cache the caller set (or
    JAX_COMPILATION_CACHE_DIR="" to turn it off) is left alone."""
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="introspect-test-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
    atexit.register(shutil.rmtree, path, ignore_errors=True)


_share_compilations()

SMOLLM = "smollm2-135m-instruct"

CHAT_PROMPTS = [
    [{"role": "user", "content": "What is 12 + 7? Answer with a number."}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three primary colors."},
    ],
    [{"role": "user", "content": "Write one sentence about the sea."}],
    [{"role": "user", "content": "Hi"}],
]


@pytest.fixture(scope="session")
def smollm():
    """The embedded SmolLM2-135M-Instruct through introspect (float32)."""
    from introspect import models

    return models.load(SMOLLM)


@pytest.fixture(scope="session")
def smollm_path():
    from introspect import models

    return models.resolve(SMOLLM)


@pytest.fixture(scope="session")
def hf_smollm(smollm_path):
    """transformers' own loading of the same GGUF (PyTorch, float32, eval mode)."""
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(smollm_path), gguf_file=os.path.basename(smollm_path), dtype=torch.float32
    )
    return model.eval()


@pytest.fixture(scope="session")
def chat_prompt_ids(smollm):
    return [
        smollm.tokenizer.apply_chat_template(m, add_generation_prompt=True) for m in CHAT_PROMPTS
    ]


@pytest.fixture(scope="module", autouse=True)
def _free_module_memory():
    """Collect each test module's garbage when it ends: module fixtures (training states with
    optimiser moments, generation stores) are released at once, not whenever the collector
    runs, which keeps each of the two workers' peak memory down."""
    yield
    gc.collect()


# `make test` runs two pytest-xdist workers that take whole files (--dist loadfile) in
# collection order; the slowest files go first so that none of them starts last.
SLOW_FIRST = (
    "models/test_sharding.py",
    "distributed/test_generate_multihost.py",
    "distributed/test_probe_multihost.py",
    "models/test_lynx_experiment.py",
    "sae/test_rise_experiment.py",
    "posttrain/test_grpo.py",
    "posttrain/test_posttrain_devices.py",
    "posttrain/test_lora.py",
    "probes/test_exit_online.py",
    "models/test_benchmark_store.py",
    "probes/test_probes_experiment.py",
    "models/test_smollm.py",
    "models/test_experiments.py",
    "train/test_train_subprocess.py",
    "cleaning/test_cleaning_parity.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return next((i for i, m in enumerate(SLOW_FIRST) if path.endswith(m)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the order within a file is kept
