"""XLA's persistent compilation cache, on by default for the command-line tools.

A stage's train step, its evaluation programs and the analyses are the same programs for every seed, stage-2
seed and rerun of a config: with the cache they are compiled once per machine (or once per bucket, with a gs://
directory shared by a pod's hosts) and loaded afterwards. A program loaded from the cache is the executable XLA
compiled for it, so results do not change.
"""

import os

from absl import flags

DEFAULT_DIRECTORY = os.path.join("~", ".cache", "iml_jax", "xla")
# Local caches are bounded (least recently used programs go first); eviction also makes JAX lock the directory,
# so concurrent runs never read a half-written entry.
MAX_LOCAL_BYTES = 4 << 30

COMPILATION_CACHE = flags.DEFINE_string(
  "compilation_cache",
  os.environ.get("JAX_COMPILATION_CACHE_DIR", DEFAULT_DIRECTORY),
  "Directory (local or gs://) of XLA's persistent compilation cache; '' compiles everything afresh. Default: "
  "$JAX_COMPILATION_CACHE_DIR, else ~/.cache/iml_jax/xla.",
)


def enable(directory: str) -> None:
  """Caches every compiled program in `directory`, even quick ones (a CPU run compiles dozens of sub-second
  programs); '' turns the cache off. Call before the first compilation."""
  import jax

  from iml_jax import io_utils

  if not directory:
    jax.config.update("jax_enable_compilation_cache", False)
    return
  io_utils.check_supported(directory)
  directory = directory if io_utils.is_remote(directory) else os.path.abspath(os.path.expanduser(directory))
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  if not io_utils.is_remote(directory):
    jax.config.update("jax_compilation_cache_max_size", MAX_LOCAL_BYTES)


def enable_from_flag() -> None:
  enable(COMPILATION_CACHE.value)
