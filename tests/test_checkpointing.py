import os
import re

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from iml_jax import config_blocks as blocks
from iml_jax import sharding, train
from iml_jax.checkpointing import DamagedCheckpoint, StageCheckpoints
from iml_jax.errors import IMLError
from iml_jax.models.decoder import DecoderConfig, DecoderLM


def _state(mesh, vocab=32, rules="fsdp"):
  model = DecoderLM(DecoderConfig(vocab_size=vocab, d_model=32, n_layers=1, n_heads=4, d_mlp=64, max_len=8))
  optimizer = train.make_optimizer(blocks.optimizer(), 10)
  abstract = train.abstract_state(model, optimizer, mesh, sharding.rules_for(rules))
  return abstract, train.create_state(model, optimizer, abstract, jax.random.key(0))


def _one_device():
  return Mesh(np.array(jax.devices()[:1]).reshape(1, 1, 1), sharding.MESH_AXES)


@pytest.mark.parametrize(
  "written, read",
  [
    (((1, 8, 1), "fsdp"), (None, "fsdp")),  # 8 devices -> 1
    ((None, "dp"), ((2, 2, 2), "fsdp_tensor")),  # 1 device -> 8
    (((8, 1, 1), "dp"), ((1, 4, 2), "fsdp_tensor")),  # another mesh shape and rule set
  ],
)
def test_round_trip_across_topologies(tmp_path, written, read):
  """Restored bit-exact straight into the reading mesh's shardings."""

  def mesh_of(shape):
    return _one_device() if shape is None else sharding.make_mesh(shape)

  _, state = _state(mesh_of(written[0]), rules=written[1])
  checkpoints = StageCheckpoints(str(tmp_path / "ckpt"))
  checkpoints.save(7, state.params, state.opt_state, {"step": 7})
  assert checkpoints.latest_step() == 7
  abstract, _ = _state(mesh_of(read[0]), rules=read[1])
  params, opt_state, meta = checkpoints.restore(7, abstract.params, abstract.opt_state)
  assert meta == {"step": 7}
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, state.params)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), opt_state, state.opt_state)
  jax.tree.map(lambda a, b: assert_same_layout(a, b.sharding), params, abstract.params)
  only_params = checkpoints.restore_params(7, abstract.params)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), only_params, params)


def assert_same_layout(array, expected):
  assert array.sharding.is_equivalent_to(expected, array.ndim)
  shard_shapes = {s.data.shape for s in array.addressable_shards}
  assert shard_shapes == {expected.shard_shape(array.shape)}


def test_mismatched_model_is_a_clear_error(tmp_path):
  mesh = sharding.make_mesh((-1, 1, 1))
  _, state = _state(mesh)
  checkpoints = StageCheckpoints(str(tmp_path / "ckpt"))
  checkpoints.save(1, state.params, state.opt_state, {})
  other, _ = _state(mesh, vocab=40)
  with pytest.raises(
    IMLError,
    match=r"does not match the configured model: .*embed_in.*"
    r"stored \(32, 32\) float32, model \(40, 32\) float32",
  ):
    checkpoints.restore_params(1, other.params)


def test_unfinished_save_is_invisible_and_removed(tmp_path):
  """Orbax writes into a temporary directory; a save killed before its rename is not a checkpoint, and the
  next run (the only writer, under the workdir lock) removes what it left."""
  unfinished = tmp_path / "ckpt" / "5.orbax-checkpoint-tmp-123" / "params"
  unfinished.mkdir(parents=True)
  (unfinished / "part").write_bytes(b"half")
  assert StageCheckpoints(str(tmp_path / "ckpt")).latest_step() is None
  assert os.listdir(tmp_path / "ckpt") == []


def test_an_empty_step_directory_is_an_unfinished_save(tmp_path):
  """What a mount without atomic renames can leave: the stage resumes from the last complete checkpoint."""
  _, state = _state(sharding.make_mesh((-1, 1, 1)))
  StageCheckpoints(str(tmp_path / "ckpt")).save(2, state.params, state.opt_state, {"step": 2})
  (tmp_path / "ckpt" / "4").mkdir()
  assert StageCheckpoints(str(tmp_path / "ckpt")).latest_step() == 2
  assert sorted(os.listdir(tmp_path / "ckpt")) == ["2", "2.sha256.json"]


def test_a_checkpoint_of_another_dtype_is_a_clear_error(tmp_path):
  mesh = sharding.make_mesh((-1, 1, 1))
  abstract, state = _state(mesh)
  checkpoints = StageCheckpoints(str(tmp_path / "ckpt"))
  checkpoints.save(1, jax.tree.map(lambda x: x.astype(jax.numpy.bfloat16), state.params), state.opt_state, {})
  with pytest.raises(IMLError, match=r"shape/dtype mismatches .*stored \(32, 32\) bfloat16, model \(32, 32\) float32"):
    checkpoints.restore_params(1, abstract.params)


# What a full disk (or quota) raises: Python's own writes, and tensorstore's (Orbax's arrays), as one really did.
TENSORSTORE_ENOSPC = (
  'RESOURCE_EXHAUSTED: Error writing "a/0" in OCDBT database at local file "/d/1.orbax-checkpoint-tmp/params'
  '.orbax-checkpoint-tmp/ocdbt.process_0/": Failed writing: "/d/1.orbax-checkpoint-tmp/params.orbax-checkpoint-tmp'
  '/ocdbt.process_0/d/382c4abf7fcf28267ca017de07634fa1": Failed to write 381428 bytes to file 14: No space left on'
  " device [os_error_code='28']"
)
FULL_DISK_ERRORS = {
  "OSError": (OSError(28, "No space left on device"), "No space left on device"),
  "tensorstore": (ValueError(TENSORSTORE_ENOSPC), "No space left on device"),
  "tensorstore quota": (
    ValueError(TENSORSTORE_ENOSPC.replace("No space left on device [os_error_code='28']", "[os_error_code='122']")),
    "Disk quota exceeded",
  ),
  "tensorstore, no errno": (
    ValueError("RESOURCE_EXHAUSTED: writing failed"),
    "resource exhausted: disk space or a quota",
  ),
}


@pytest.mark.parametrize("error, reason", FULL_DISK_ERRORS.values(), ids=FULL_DISK_ERRORS.keys())
def test_a_full_disk_keeps_the_earlier_checkpoints(tmp_path, monkeypatch, error, reason):
  import orbax.checkpoint as ocp

  _, state = _state(sharding.make_mesh((-1, 1, 1)))
  checkpoints = StageCheckpoints(str(tmp_path / "ckpt"))
  checkpoints.save(2, state.params, state.opt_state, {"step": 2})

  def full_disk(*args, **kwargs):
    raise error

  monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
  with pytest.raises(
    IMLError,
    match=rf"^saving checkpoint step 4 in {re.escape(str(tmp_path / 'ckpt'))} failed \({reason}\); "
    r"the earlier checkpoints are intact: free space and rerun to resume$",
  ):
    checkpoints.save(4, state.params, state.opt_state, {"step": 4})
  assert checkpoints.latest_step() == 2


def test_a_save_failing_for_another_reason_is_not_called_a_full_disk(tmp_path, monkeypatch):
  import orbax.checkpoint as ocp

  _, state = _state(sharding.make_mesh((-1, 1, 1)))
  checkpoints = StageCheckpoints(str(tmp_path / "ckpt"))

  def broken(*args, **kwargs):
    raise ValueError("bug")

  monkeypatch.setattr(ocp.CheckpointManager, "save", broken)
  with pytest.raises(ValueError, match="^bug$"):
    checkpoints.save(4, state.params, state.opt_state, {"step": 4})


def test_a_checkpoint_without_its_digest_is_never_restored(tmp_path):
  """Killed between Orbax's rename and the digest file: the checkpoint is unfinished. A restore refuses it (a
  finished stage's), and a resumed stage deletes it and resumes from the one before, which it saves again."""
  abstract, state = _state(sharding.make_mesh((-1, 1, 1)))
  checkpoints = StageCheckpoints(str(tmp_path / "ckpt"))
  for step in (2, 4):
    checkpoints.save(step, state.params, state.opt_state, {"step": step})
  os.remove(tmp_path / "ckpt" / "4.sha256.json")
  reopened = StageCheckpoints(str(tmp_path / "ckpt"))
  with pytest.raises(
    DamagedCheckpoint, match=r"checkpoint .*ckpt/4 has no digest file .*4.sha256.json: its save did not"
  ):
    reopened.restore_params(4, abstract.params)
  with pytest.raises(DamagedCheckpoint, match="has no digest file"):
    reopened.restore(4, abstract.params, abstract.opt_state)
  assert reopened.discard_unverified() == [4]
  assert reopened.latest_step() == 2
  assert sorted(os.listdir(tmp_path / "ckpt")) == ["2", "2.sha256.json"]
  assert reopened.discard_unverified() == []
  reopened.save(4, state.params, state.opt_state, {"step": 4})
  assert reopened.restore(4, abstract.params, abstract.opt_state)[2] == {"step": 4}


def test_the_last_verified_checkpoint_outlives_a_save_cut_short_before_its_digest(tmp_path, monkeypatch):
  """With max_to_keep=1 the older step goes only once the newer one has its digest: killed in between, the stage
  resumes from the older step, not from its start."""
  from iml_jax import io_utils

  abstract, state = _state(sharding.make_mesh((-1, 1, 1)))
  checkpoints = StageCheckpoints(str(tmp_path / "ckpt"), max_to_keep=1)
  checkpoints.save(1, state.params, state.opt_state, {"step": 1})
  checkpoints.save(2, state.params, state.opt_state, {"step": 2})
  assert sorted(os.listdir(tmp_path / "ckpt")) == ["2", "2.sha256.json"]

  def killed(*args, **kwargs):
    raise KeyboardInterrupt  # the process dies before the digest is written

  monkeypatch.setattr(io_utils, "atomic_write_json", killed)
  with pytest.raises(KeyboardInterrupt):
    checkpoints.save(3, state.params, state.opt_state, {"step": 3})
  monkeypatch.undo()
  reopened = StageCheckpoints(str(tmp_path / "ckpt"), max_to_keep=1)
  assert reopened.discard_unverified() == [3]
  assert reopened.latest_step() == 2
  assert reopened.restore(2, abstract.params, abstract.opt_state)[2] == {"step": 2}


def _largest_file(directory):
  files = [os.path.join(folder, name) for folder, _, names in os.walk(directory) for name in names]
  return max(files, key=os.path.getsize)


def test_a_damaged_checkpoint_file_is_named_before_anything_is_restored(tmp_path):
  """A flipped bit in the stored arrays once restored a different model in silence; the digests saved beside each
  step catch it, and a checkpoint max_to_keep removed takes its digests along."""
  abstract, state = _state(sharding.make_mesh((-1, 1, 1)))
  checkpoints = StageCheckpoints(str(tmp_path / "ckpt"), max_to_keep=2)
  for step in (1, 2, 3):
    checkpoints.save(step, state.params, state.opt_state, {"step": step})
  assert sorted(n for n in os.listdir(tmp_path / "ckpt") if n.endswith(".sha256.json")) == [
    "2.sha256.json",
    "3.sha256.json",
  ]
  victim = _largest_file(tmp_path / "ckpt" / "3")
  data = bytearray(open(victim, "rb").read())
  data[len(data) // 2] ^= 1
  open(victim, "wb").write(bytes(data))
  relative = os.path.relpath(victim, tmp_path / "ckpt")
  with pytest.raises(
    DamagedCheckpoint, match=f"checkpoint file .*ckpt/{re.escape(relative)} differs from the file saved"
  ):
    checkpoints.restore(3, abstract.params, abstract.opt_state)
  with pytest.raises(DamagedCheckpoint, match="differs from the file saved"):
    checkpoints.restore_params(3, abstract.params)
  params = checkpoints.restore_params(2, abstract.params)  # the one before is intact
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), params, state.params)
  os.remove(_largest_file(tmp_path / "ckpt" / "2"))
  with pytest.raises(DamagedCheckpoint, match="is missing"):
    checkpoints.restore_params(2, abstract.params)
