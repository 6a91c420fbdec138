"""The XLA_FLAGS every test process gets (tests/xla_flags.py)."""

import os

import xla_flags


def test_this_process_compiles_faster_on_eight_devices():
  flags = os.environ["XLA_FLAGS"].split()
  assert set(xla_flags.FASTER_COMPILE) <= set(flags) and "--xla_force_host_platform_device_count=8" in flags


def test_an_option_set_already_is_kept_and_the_device_count_replaced(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3 --xla_force_host_platform_device_count=8")
  assert xla_flags.for_tests(devices=2).split() == [
    "--xla_backend_optimization_level=3",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_force_host_platform_device_count=2",
  ]
