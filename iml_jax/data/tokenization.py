"""Tokenizers built locally from the generated data, and text → fixed-shape int arrays + loss masks.

Causal-LM layout as in the study (docs/study.md §7.5): each text is right-padded to `block_size` with the
pad token (= EOS), targets are the inputs shifted by one, and by default every target position counts
in the loss, padding included — that is how a model learns to stop. Options mask the prompt, the
padding after the first EOS, or chosen tokens (e.g. an unpredictable alias).

Seq2seq layout (T5): inputs = prompt + EOS, targets = completion + EOS, both right-padded; every
target position counts in the loss by default, padding included, as in the study.
"""

import dataclasses

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from iml_jax import io_utils
from iml_jax.data.common import Example
from iml_jax.errors import IMLError

EOS_TOKEN = "<|endoftext|>"
PAD_TOKENS = (EOS_TOKEN, "[PAD]")  # the token that pads and ends texts, by tokenizer family


@dataclasses.dataclass
class TextTokenizer:
  """A `tokenizers.Tokenizer` plus the id that pads and ends every sequence."""

  backend: Tokenizer
  pad_id: int

  @property
  def vocab_size(self) -> int:
    return self.backend.get_vocab_size()

  def encode(self, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

  def decode(self, ids) -> str:
    """Text of `ids` up to the first pad/EOS, as the study keeps it."""
    ids = list(ids)
    if self.pad_id in ids:
      ids = ids[: ids.index(self.pad_id)]
    return self.backend.decode(ids, skip_special_tokens=False)

  def token_ids(self, tokens: list[str]) -> np.ndarray:
    ids = [self.backend.token_to_id(t) for t in tokens]
    unknown = [t for t, i in zip(tokens, ids) if i is None]
    if unknown:
      raise IMLError(f"tokenizer has no single token for {unknown[:5]} ...; one token per alias is needed")
    return np.asarray(ids, dtype=np.int32)

  def save(self, path: str) -> None:
    io_utils.atomic_write_text(path, self.backend.to_str(pretty=True))

  @classmethod
  def load(cls, path: str) -> "TextTokenizer":
    try:
      backend = Tokenizer.from_str(io_utils.read_text(path))
    except Exception as err:  # the library raises plain Exceptions for malformed files
      raise IMLError(f"tokenizer file {path} is not a valid tokenizers JSON file ({err})") from None
    pad_ids = [i for i in (backend.token_to_id(t) for t in PAD_TOKENS) if i is not None]
    if not pad_ids:
      raise IMLError(f"tokenizer file {path} has none of the pad/end tokens {PAD_TOKENS}")
    return cls(backend, pad_ids[0])


def word_level_tokenizer(vocabulary: list[str]) -> TextTokenizer:
  """The study's numeric tokenizer: WordLevel over whitespace-split words; `[PAD]` pads, no EOS."""
  backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocabulary)}, unk_token="[UNK]"))
  backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
  return TextTokenizer(backend, vocabulary.index("[PAD]"))


def byte_level_bpe_tokenizer(texts: list[str], vocab_size: int) -> TextTokenizer:
  """A GPT-style byte-level BPE trained on `texts`; `<|endoftext|>` (id 0) pads and ends texts."""
  backend = Tokenizer(models.BPE())
  backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  backend.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
    vocab_size=vocab_size,
    special_tokens=[EOS_TOKEN],
    show_progress=False,
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
  )
  backend.train_from_iterator(sorted(set(texts)), trainer=trainer)
  return TextTokenizer(backend, 0)


def pretrained_tokenizer(folder: str) -> TextTokenizer:
  """The tokenizer of a Hugging Face model folder; its EOS pads and ends texts, as in the study."""
  from transformers import AutoTokenizer

  try:
    hf_tokenizer = AutoTokenizer.from_pretrained(folder)
  except Exception as err:  # transformers raises many types for a missing or broken tokenizer
    raise IMLError(f"{folder}: no tokenizer could be loaded ({type(err).__name__}: {err})") from None
  if hf_tokenizer.eos_token_id is None:
    raise IMLError(f"{folder}: the tokenizer has no EOS token to pad and stop generation with")
  return TextTokenizer(hf_tokenizer.backend_tokenizer, hf_tokenizer.eos_token_id)


@dataclasses.dataclass
class EncodedExamples:
  """`tokens` [N, block_size] int32 and `loss_mask` [N, block_size - 1] float32 over targets."""

  tokens: np.ndarray
  loss_mask: np.ndarray


def _check_length(lengths: np.ndarray, limit: int, field: str, what: str) -> None:
  if lengths.size and lengths.max() > limit:
    raise IMLError(
      f"config field {field} = {limit}: the longest {what} has {int(lengths.max())} tokens; "
      f"raise {field} to at least {int(lengths.max())}"
    )


def encode_for_training(
  tokenizer: TextTokenizer,
  examples: list[Example],
  block_size: int,
  mask_prompt: bool = False,
  mask_padding: bool = False,
  excluded_token_ids: np.ndarray | None = None,
) -> EncodedExamples:
  texts = tokenizer.encode([ex.text for ex in examples])
  lengths = np.array([len(t) for t in texts])
  # One position must stay free for the pad the model learns to stop with.
  _check_length(lengths + 1, block_size, "data.block_size", "training text (+1 end token)")
  tokens = np.full((len(texts), block_size), tokenizer.pad_id, dtype=np.int32)
  for row, ids in zip(tokens, texts):
    row[: len(ids)] = ids
  targets = tokens[:, 1:]
  position = np.arange(1, block_size)[None, :]
  mask = np.ones(targets.shape, dtype=np.float32)
  if mask_prompt:
    prompt_lengths = np.array([len(t) for t in tokenizer.encode([ex.prompt for ex in examples])])
    mask *= position >= prompt_lengths[:, None]
  if mask_padding:
    mask *= position <= lengths[:, None]  # keeps the first pad: the stop signal
  if excluded_token_ids is not None and excluded_token_ids.size:
    mask *= ~np.isin(targets, excluded_token_ids)
  return EncodedExamples(tokens, mask)


def encode_prompts(
  tokenizer: TextTokenizer, examples: list[Example], bucket: int, max_prompt_length: int
) -> np.ndarray:
  """Left-padded prompts [N, P], P = the longest prompt rounded up to a multiple of `bucket`."""
  prompts = tokenizer.encode([ex.prompt for ex in examples])
  lengths = np.array([len(p) for p in prompts])
  _check_length(lengths, max_prompt_length, "data.block_size", "evaluation prompt")
  width = int(-(-lengths.max() // bucket) * bucket) if len(prompts) else bucket
  width = min(width, max_prompt_length)
  tokens = np.full((len(prompts), width), tokenizer.pad_id, dtype=np.int32)
  for row, ids in zip(tokens, prompts):
    row[width - len(ids) :] = ids
  return tokens


def _right_padded(sequences: list[list[int]], width: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  tokens = np.full((len(sequences), width), pad_id, dtype=np.int32)
  mask = np.zeros((len(sequences), width), dtype=bool)
  for row, valid, ids in zip(tokens, mask, sequences):
    row[: len(ids)] = ids
    valid[: len(ids)] = True
  return tokens, mask


def encode_seq2seq_inputs(
  tokenizer: TextTokenizer, examples: list[Example], bucket: int, max_length: int
) -> tuple[np.ndarray, np.ndarray]:
  """(inputs [N, I], mask [N, I]): prompt + EOS right-padded to the longest, rounded up to `bucket`."""
  inputs = [ids + [tokenizer.pad_id] for ids in tokenizer.encode([ex.prompt for ex in examples])]
  lengths = np.array([len(ids) for ids in inputs])
  _check_length(lengths, max_length, "data.block_size", "seq2seq input (+1 end token)")
  width = min(int(-(-lengths.max(initial=1) // bucket) * bucket), max_length)
  return _right_padded(inputs, width, tokenizer.pad_id)


def encode_seq2seq(
  tokenizer: TextTokenizer,
  examples: list[Example],
  block_size: int,
  label_block_size: int,
  mask_padding: bool = False,
  excluded_token_ids: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
  """Training arrays: inputs/input_mask [N, block_size], targets/loss_mask [N, label_block_size]."""
  inputs, input_mask = encode_seq2seq_inputs(tokenizer, examples, block_size, block_size)
  targets = [ids + [tokenizer.pad_id] for ids in tokenizer.encode([ex.completion for ex in examples])]
  _check_length(np.array([len(t) for t in targets]), label_block_size, "data.label_block_size", "target (+1 end token)")
  targets, first_pad_and_before = _right_padded(targets, label_block_size, tokenizer.pad_id)
  loss_mask = np.ones(targets.shape, dtype=np.float32)
  if mask_padding:
    loss_mask *= first_pad_and_before
  if excluded_token_ids is not None and excluded_token_ids.size:
    loss_mask *= ~np.isin(targets, excluded_token_ids)
  return {"inputs": inputs, "input_mask": input_mask, "targets": targets, "loss_mask": loss_mask}
