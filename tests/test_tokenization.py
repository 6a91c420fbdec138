import pytest

from iml_jax.data.common import Example
from iml_jax.data.tokenization import (
  TextTokenizer,
  byte_level_bpe_tokenizer,
  encode_for_training,
  encode_prompts,
  encode_seq2seq,
  encode_seq2seq_inputs,
  word_level_tokenizer,
)
from iml_jax.errors import IMLError

VOCAB = ["[PAD]", "[UNK]", "=", "%", "true", "false", "define1", "abc", "7", "8", "9"]


@pytest.fixture
def words():
  return word_level_tokenizer(VOCAB)


def test_training_layout_and_masks(words):
  examples = [Example("abc % 7 8 =", " true"), Example("define1 abc %", " 9")]
  full = encode_for_training(words, examples, block_size=8)
  assert full.tokens.tolist() == [[7, 3, 8, 9, 2, 4, 0, 0], [6, 7, 3, 10, 0, 0, 0, 0]]
  assert full.loss_mask.shape == (2, 7) and full.loss_mask.all()  # the study's loss: everything
  prompt = encode_for_training(words, examples, 8, mask_prompt=True)
  assert prompt.loss_mask.tolist()[0] == [0, 0, 0, 0, 1, 1, 1]
  padding = encode_for_training(words, examples, 8, mask_padding=True)
  assert padding.loss_mask.tolist()[1] == [1, 1, 1, 1, 0, 0, 0]  # keeps the first pad: the stop
  alias = encode_for_training(words, examples, 8, excluded_token_ids=words.token_ids(["abc"]))
  assert alias.loss_mask.tolist()[1] == [0, 1, 1, 1, 1, 1, 1]


def test_seq2seq_layout_counts_padding_in_the_loss(words):
  examples = [Example("abc % 7 8 =", " true"), Example("define1 abc %", " 9")]
  full = encode_seq2seq(words, examples, block_size=6, label_block_size=3)
  assert full["inputs"].tolist() == [[7, 3, 8, 9, 2, 0], [6, 7, 3, 0, 0, 0]]  # prompt + end token
  assert full["input_mask"].tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]
  assert full["targets"].tolist() == [[4, 0, 0], [10, 0, 0]]
  assert full["loss_mask"].all()  # the study's seq2seq loss: pads too
  assert encode_seq2seq(words, examples, 6, 3, mask_padding=True)["loss_mask"].tolist() == [[1, 1, 0], [1, 1, 0]]
  inputs, mask = encode_seq2seq_inputs(words, examples[1:], bucket=8, max_length=16)
  assert inputs.tolist() == [[6, 7, 3, 0, 0, 0, 0, 0]] and mask.sum() == 4
  with pytest.raises(IMLError, match=r"data.label_block_size = 1: .* 2 tokens"):
    encode_seq2seq(words, examples, 6, 1)


def test_block_size_too_small_names_the_field(words):
  with pytest.raises(IMLError, match=r"data.block_size = 6: .* 7 tokens"):
    encode_for_training(words, [Example("abc % 7 8 =", " true")], block_size=6)


def test_prompts_left_padded_to_bucket(words):
  prompts = encode_prompts(
    words, [Example("abc % 7 =", " true"), Example("define1 abc %", " 9")], bucket=8, max_prompt_length=16
  )
  assert prompts.tolist() == [[0, 0, 0, 0, 7, 3, 8, 2], [0, 0, 0, 0, 0, 6, 7, 3]]


def test_byte_level_bpe_round_trip_and_determinism(tmp_path):
  texts = ["Q: When was <|abcde|> born?\nA: 1920s\n", "<|ttdgdx|> <|abcde|> Côte d'Ivoire\n"] * 20
  first, second = byte_level_bpe_tokenizer(texts, 300), byte_level_bpe_tokenizer(texts, 300)
  assert first.backend.to_str() == second.backend.to_str()
  for text in texts[:2]:
    ids = first.encode([text])[0]
    assert first.decode(ids + [first.pad_id, 5]) == text  # decoding stops at the pad/EOS
  first.save(str(tmp_path / "tok.json"))
  loaded = TextTokenizer.load(str(tmp_path / "tok.json"))
  assert loaded.pad_id == 0 and loaded.encode(texts[:2]) == first.encode(texts[:2])


def test_malformed_tokenizer_file(tmp_path):
  path = tmp_path / "bad.json"
  path.write_text("{not json")
  with pytest.raises(IMLError, match="bad.json is not a valid tokenizers JSON"):
    TextTokenizer.load(str(path))
