"""XLA_FLAGS for test processes. Compiling is three quarters of the suite's time on 2 CPU cores (measured with
jax.monitoring's compile durations: 265 of 349 s in tests/test_train.py and tests/test_decoder.py), and the
tests' programs run for milliseconds, so tests compile with LLVM's optimisations off and XLA:CPU's per-op
emitters instead of its fusion emitters: those two files then take 163 s instead of 349 s, the compile 85 s.
What a test compares is compiled the same way on both sides. The headline check (tests/test_default_config.py)
runs as a user runs it, with XLA's defaults (its 5 seeds of training run for minutes, and compiled this
way had not finished after 11 minutes instead of 260 s); an option set in XLA_FLAGS already is kept, so
`XLA_FLAGS="--xla_backend_optimization_level=3 --xla_cpu_use_fusion_emitters=true"` runs any test as users
compile."""

import os

FASTER_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
_DEVICE_COUNT = "--xla_force_host_platform_device_count"


def for_tests(devices: int) -> str:
  """This process's XLA_FLAGS with the tests' compile options (each one unless set already) and `devices` fake
  CPU devices."""
  kept = [flag for flag in os.environ.get("XLA_FLAGS", "").split() if flag.split("=")[0] != _DEVICE_COUNT]
  named = {flag.split("=")[0] for flag in kept}
  kept += [flag for flag in FASTER_COMPILE if flag.split("=")[0] not in named]
  return " ".join(kept + [f"{_DEVICE_COUNT}={devices}"])
