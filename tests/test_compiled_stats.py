"""What the optimised HLO says: collectives by kind, and bytes by the JAX source they come from."""

from iml_jax import compiled_stats


def test_collectives_are_read_from_the_optimised_program():
  hlo = """
  %all-gather-start.1 = (f32[4,8]{1,0}, f32[16,8]{1,0}) all-gather-start(f32[4,8]{1,0} %p), dimensions={0}
  %all-gather-done.1 = f32[16,8]{1,0} all-gather-done((f32[4,8]{1,0}, f32[16,8]{1,0}) %all-gather-start.1)
  %all-reduce.2 = bf16[1024]{0} all-reduce(bf16[1024]{0} %x), to_apply=%add
  %reduce-scatter.3 = f32[2,8]{1,0} reduce-scatter(f32[8,8]{1,0} %y), dimensions={0}
  %fusion.4 = f32[8]{0} fusion(f32[8]{0} %all-reduce.9), kind=kLoop
  """
  assert compiled_stats.collectives(hlo) == {
    "all-gather": (1, 16 * 8 * 4),
    "all-reduce": (1, 1024 * 2),
    "reduce-scatter": (1, 2 * 8 * 4),
  }


def test_a_collective_copied_into_each_phase_of_an_async_fusion_counts_once():
  """XLA:TPU's async collective fusions hold the same all-gather (one channel id) in the computation of each
  phase; a ring of collective-permutes has a channel per transfer."""
  gather = "bf16[64,32]{1,0} all-gather(%param_0.N), channel_id=56, dimensions={0}"
  hlo = f"""
%fused_computation.1 (param_0.1: bf16[8,32]) -> bf16[64,32] {{
  ROOT %all-gather.1 = {gather.replace("N", "1")}
}}
%async_collective_fusion.2 (param_0.2: bf16[8,32]) -> bf16[64,32] {{
  ROOT %all-gather.2 = {gather.replace("N", "2")}
}}
  %collective-permute-start = (bf16[8,32]{{1,0}}, bf16[8,32]{{1,0}}) collective-permute-start(%a), channel_id=91
  %collective-permute-start.1 = (bf16[8,32]{{1,0}}, bf16[8,32]{{1,0}}) collective-permute-start(%b), channel_id=92
  """
  assert compiled_stats.collectives(hlo) == {"all-gather": (1, 64 * 32 * 2), "collective-permute": (2, 2 * 8 * 32 * 2)}


def test_bytes_are_counted_where_they_live_and_by_source():
  """Top-level instructions only (a fusion's own body is inside it), HBM arrays only (`S(1)`: a core's memory),
  an async slice as the slice it reads, and the model path without its layer index."""
  backward = 'op_name="jit(step)/transpose(jvp(DecoderLM))/layers_3/mlp/dense_4h_to_h/dot_general"'
  forward = 'op_name="jit(step)/jvp(DecoderLM)/layers_7/mlp/dense_4h_to_h/dot_general"'
  convert = 'op_name="jit(step)/jvp(DecoderLM)/layers_0/attention/convert_element_type"'
  in_core = "{1,0:T(8,128)S(1)}"
  hlo = f"""
HloModule jit_step

%fused_computation.1 (param_0: f32[64,32]) -> f32[64,32] {{
  %param_0 = f32[64,32]{{1,0}} parameter(0)
  ROOT %negate.9 = f32[64,32]{{1,0}} negate(%param_0), metadata={{op_name="jit(step)/inner"}}
}}

ENTRY %main (p0: f32[64,32], p1: bf16[8,32]) -> f32[64,32] {{
  %p0 = f32[64,32]{{1,0}} parameter(0)
  %p1 = bf16[8,32]{{1,0}} parameter(1)
  %fusion.1 = f32[64,32]{{1,0}} fusion(%p0), kind=kLoop, calls=%fused_computation.1, metadata={{{backward}}}
  %fusion.2 = f32[64,32]{{1,0}} fusion(%p0), kind=kLoop, calls=%fused_computation.1, metadata={{{forward}}}
  %slice-start.3 = ((f32[64,32]{{1,0}}), f32[16,32]{in_core}, s32[]{{:S(2)}}) slice-start(%p0), slice={{[0:16]}}
  %slice-done.3 = f32[16,32]{in_core} slice-done(%slice-start.3)
  %convert.4 = f32[8,32]{in_core} convert(%p1), metadata={{{convert}}}
  ROOT %add.5 = f32[64,32]{{1,0}} add(%fusion.1, %fusion.2)
}}
"""
  found = compiled_stats.bytes_by_source(hlo)
  matrix = 64 * 32 * 4
  assert found == {
    "backward mlp/dense_4h_to_h/dot_general": 2 * matrix,  # its operand and result
    "mlp/dense_4h_to_h/dot_general": 2 * matrix,  # layer 7 and layer 3 are one source
    "slice-start": 16 * 32 * 4,  # the slice read from HBM into the core's memory
    "attention/convert_element_type": 8 * 32 * 2,  # reads bf16 from HBM, writes into the core's memory
    "add": 3 * matrix,
  }
