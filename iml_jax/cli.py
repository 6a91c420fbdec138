"""What the command-line tools share: a user's mistake is one line `<tool>: error: ...` and exit status 2, from
the flags and the config file on; a traceback means a bug in iml_jax."""

import os
import re
import sys
import traceback
from typing import NoReturn

from absl import flags

USER_ERROR_EXIT_STATUS = 2


def fail(program: str, message) -> NoReturn:
  lines = [line.strip() for line in str(message).splitlines() if line.strip()]
  print(f"{program}: error: {'; '.join(lines)}", file=sys.stderr)
  sys.exit(USER_ERROR_EXIT_STATUS)


def flags_parser(program: str):
  """`app.run`'s flags_parser: a missing or failing config file, an unknown `:arg`, an override naming no field or
  holding a value of the wrong type, an unknown flag — each is one line and exit status 2."""

  def parse(argv: list[str]) -> list[str]:
    config_file = next((a.split("=", 1)[1].split(":", 1)[0] for a in argv[1:] if a.startswith("--config=")), None)
    if config_file is not None and not os.path.isfile(config_file):
      fail(program, f"--config: config file {config_file} does not exist")
    try:
      remaining = flags.FLAGS(argv)
      if "config" in flags.FLAGS and flags.FLAGS["config"].present:
        _ = flags.FLAGS["config"].value  # a config file's loading errors are raised on first access
      return remaining
    except flags.Error as err:
      fail(program, err)
    except Exception as err:  # pylint: disable=broad-except  (the config file is the user's code)
      fail(program, describe_config_error(err, argv, config_file))

  return parse


def describe_config_error(err: Exception, argv: list[str], config_file: str | None) -> str:
  """The line for an exception raised while loading `--config` and applying its `--config.*` overrides."""
  from iml_jax.errors import IMLError

  if isinstance(err, IMLError):
    return str(err)
  detail = err
  while isinstance(detail, (KeyError, AttributeError)) and detail.args:  # ml_collections nests a KeyError's text
    detail = detail.args[0]
  text = str(detail)
  if isinstance(err, (KeyError, AttributeError)):
    missing = re.search(r"'([^'\"]+)'", text)
    field = missing.group(1) if missing else text
    suggestion = re.search(r'Did you mean "([^"]+)"', text)
    overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
    named = next((o for o in overrides if field in o[len("--config.") :].split(".")), "a --config.* override")
    return f"{named}: the config has no field {field!r}" + (
      f" (did you mean {suggestion.group(1)!r}?)" if suggestion else ""
    )
  frames = [
    f
    for f in traceback.extract_tb(err.__traceback__)
    if config_file and os.path.abspath(f.filename) == os.path.abspath(config_file)
  ]
  if isinstance(err, SyntaxError) and err.filename:
    where = f"{err.filename}, line {err.lineno}"
  elif frames:
    where = f"{frames[-1].filename}, line {frames[-1].lineno}"
  else:
    where = config_file or "--config"
  return f"config file {where}: {type(err).__name__}: {text}"
