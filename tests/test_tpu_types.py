"""TPU slice types by their gcloud names: libtpu's topologies (no TPU needed) and the chips' published figures."""

import re
import sys

import pytest

from iml_jax import tpu_types
from iml_jax.errors import IMLError
from iml_jax.tpu_types import GiB


def test_tpu_types_name_slices_as_gcloud_does():
  v4, v5e, v5p = (tpu_types.tpu_type(n) for n in ("v4-8", "v5litepod-8", "v5p-16"))
  assert (v4.chips, v4.topology, len(tpu_types.topology_devices(v4))) == (4, "v4:2x2x1", 4)  # megacore
  assert (v5e.chips, v5e.topology, v5e.device_hbm_bytes) == (8, "v5e:2x4", 16 * GiB)
  assert (v5p.chips, v5p.topology) == (8, "v5p:2x2x2")
  v3 = tpu_types.tpu_type("v3-8")
  assert (v3.chips, v3.devices, len(tpu_types.topology_devices(v3))) == (4, 8, 8)  # a TensorCore per device
  assert v3.device_peak_flops == v3.chip.peak_bf16_flops / 2


def test_without_libtpu_it_says_which_extra_installs_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "libtpu", None)  # `import libtpu` raises ImportError
  with pytest.raises(IMLError, match=re.escape('pip install -e ".[tpu]"')):
    tpu_types.topology_devices(tpu_types.tpu_type("v5litepod-8"))


@pytest.mark.parametrize("name", ["v9-8", "v4-6", "v5litepod-3", "tpu", "v5p-8x"])
def test_an_unknown_type_names_the_known_ones(name):
  with pytest.raises(IMLError, match=re.escape(f"--tpu={name}: unknown TPU type; expected one of v2-8, ")):
    tpu_types.tpu_type(name)
