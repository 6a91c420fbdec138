"""The config boundary: a ConfigDict is read once into frozen, typed specs, and no module below the entry reads it."""

import collections
import dataclasses
import sys

import ml_collections
import pytest

from iml_jax import experiment, specs
from iml_jax.data import define, numeric
from iml_jax.errors import IMLError
from test_experiment import tiny_config

# The modules that meet the ConfigDict: the entry, the spec reader and the comparison with the study.
ENTRY_MODULES = {"iml_jax.experiment", "iml_jax.specs", "iml_jax.study_settings"}


def test_a_config_becomes_frozen_typed_specs_with_its_values():
  config = tiny_config()
  spec = specs.Experiment.from_config(config)
  assert type(spec.data) is numeric.Data and spec.data.num_x == config.data.num_x
  assert spec.stage_names == config.stage_names == ("stage1", "stage2")
  stage2 = spec.stages["stage2"]
  assert (stage2.name, stage2.batch_size, stage2.epochs, stage2.trainable) == ("stage2", 8, 2, "alias_embeddings")
  assert dataclasses.asdict(spec.stages["stage2"].optimizer) == config.stages.stage2.optimizer.to_dict()
  assert dict(spec.data.fractions) == config.data.fractions.to_dict()
  assert spec.model.fields["d_model"] == config.model.d_model and "name" not in spec.model.fields
  assert spec.deviations and all(isinstance(d, str) for d in spec.deviations)
  with pytest.raises(dataclasses.FrozenInstanceError):
    spec.stages["stage1"].epochs = 1
  with pytest.raises(TypeError):
    spec.data.fractions["d1consis"] = 1.0  # a read-only mapping


def test_a_define_config_gets_the_define_data_spec():
  spec = specs.Experiment.from_config(experiment.load_config("configs/define_synthetic.py:tiny"))
  assert type(spec.data) is define.Data and spec.data.knowledge_base == "synthetic"


@pytest.mark.parametrize(
  "change, message",
  [
    (lambda c: c.data.update(num_xs=3), r"config field data\.num_xs is not one of Data's fields"),
    (lambda c: c.stages.stage1.optimizer.update(beta=0.5), r"config field stages\.stage1\.optimizer\.beta is not"),
    (lambda c: c.stages.stage1.update(epochs=0), r"config field stages\.stage1\.epochs = 0: expected >= 1"),
    (lambda c: c.update(task="arithmetic"), r"config field task = 'arithmetic': expected one of"),
  ],
)
def test_a_field_the_spec_does_not_have_or_a_bad_value_is_one_line_naming_it(change, message):
  config = tiny_config()
  config.unlock()
  change(config)
  with pytest.raises(IMLError, match=message):
    specs.Experiment.from_config(config)


def test_no_module_below_the_entry_reads_the_config(tmp_path, monkeypatch):
  """The walk of the ConfigDict through a whole run (train, evaluate, report): which modules read a field of it."""
  readers = collections.Counter()
  get_attribute, get_item = ml_collections.ConfigDict.__getattr__, ml_collections.ConfigDict.__getitem__

  def recorded(read):
    def wrapped(self, key):
      readers[sys._getframe(1).f_globals.get("__name__")] += 1
      return read(self, key)

    return wrapped

  monkeypatch.setattr(ml_collections.ConfigDict, "__getattr__", recorded(get_attribute))
  monkeypatch.setattr(ml_collections.ConfigDict, "__getitem__", recorded(get_item))
  experiment.run(tiny_config(n_seeds=1), str(tmp_path))
  iml_readers = {name for name in readers if name.startswith("iml_jax")}
  assert iml_readers and iml_readers <= ENTRY_MODULES, sorted(iml_readers)
