"""The task protocol: each task is found by its name, builds its stages' data, names the aliases its examples
mention (the pairing of the gradient-alignment analysis), and says which model reads an array task."""

import pytest

from iml_jax import experiment, grad_alignment, specs
from iml_jax.data import tasks
from iml_jax.errors import IMLError
from iml_jax.models import registry

CONFIGS = {
  "numeric": "configs/default.py:tiny",
  "modular": "configs/modular.py:tiny",
  "define": "configs/define_synthetic.py:tiny",
  "vision": "configs/vision.py:tiny",
  "toy1d": "configs/toy1d.py:tiny",
}


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_each_task_builds_its_last_stage_and_pairs_definitions_with_questions(name):
  config = specs.Experiment.from_config(experiment.load_config(CONFIGS[name]))
  task = tasks.for_seed(config, 0)
  assert type(task) is tasks.TASKS[name] and config.task == name
  last = config.stage_names[-1]
  data = task.stage_data(0, len(config.stage_names) - 1, config.stages[last].train_subset)
  assert data.train and {"d1consis", "d2consis", "train_defs_d1consis"} <= set(data.evals)
  if task.array_model:  # an array task: read by the one model that takes its arrays, no tokenizer
    assert registry.SPECS[task.array_model].inputs == "arrays" and task.tokenizer("unused") is None
    assert len(task.encode_arrays(data.evals["d1consis"])["inputs"]) == len(data.evals["d1consis"])
    return
  definitions, questions = grad_alignment.pair_up(
    data.evals["train_defs_d1consis"], data.evals["d1consis"], task.aliases_in
  )
  assert definitions and all(questions)
  for definition, asked in zip(definitions, questions):
    alias = task.aliases_in(asked[0])[-1]
    assert alias in task.aliases_in(definition) and all(alias in task.aliases_in(q) for q in asked)


def test_task_level_answers_come_from_the_task_class():
  assert tasks.chance_level("numeric") == 0.5 and tasks.score_of("numeric").fields == ("em", "f1")
  assert tasks.array_model("numeric") is None
  assert tasks.score_of("toy1d").fields != ("em", "f1") and tasks.chance_level("toy1d") is None
  assert tasks.array_model("toy1d") == "mlp"


def test_an_unknown_task_is_one_line_naming_the_field():
  config = experiment.load_config(CONFIGS["numeric"])
  config.task = "arithmetic"
  with pytest.raises(IMLError, match=r"config field task = 'arithmetic': expected one of \('numeric', 'define'"):
    specs.Experiment.from_config(config)
  assert tasks.array_model("arithmetic") is None
