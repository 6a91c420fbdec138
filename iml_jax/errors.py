"""The one exception type users see: a message naming the field or file and what is expected."""


class IMLError(Exception):
  """Bad input (config field, data file, checkpoint, workdir) or a diverged run.

  `main` prints the message on one line and exits non-zero; nothing finished is overwritten
  because every check runs before the first write it guards.
  """
