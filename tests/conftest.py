"""Tests run on CPU with 8 fake devices, so nothing silently assumes a single device."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def shared_per_module(fixture_name, config):
  """The scope of an expensive data fixture: shared by a module's tests, except under mutation testing
  (mutmut sets MUTANT_UNDER_TEST), where every test must build it again so that the test is linked to the
  code it exercises and a mutant reaches it."""
  del fixture_name, config
  return "function" if "MUTANT_UNDER_TEST" in os.environ else "module"
