"""Files that must not hang or flood a reader: a FIFO and a sparse file past the byte limit.

`within` runs a read in a daemon thread and fails the test if it blocks, then
unblocks a reader stuck on the FIFO so no thread is left behind.
"""

import os
import threading


def make_fifo(path: str) -> str:
  os.mkfifo(path)
  return path


def make_sparse(path: str, num_bytes: int) -> str:
  """A file of `num_bytes` zero bytes that takes no disk space."""
  with open(path, "wb"):
    pass
  os.truncate(path, num_bytes)
  return path


def within(seconds: float, function, *args, fifo: str = ""):
  """`function(*args)`, or an AssertionError if it has not returned after `seconds`."""
  outcome = {}

  def call():
    try:
      outcome["value"] = function(*args)
    except BaseException as error:  # pylint: disable=broad-except
      outcome["error"] = error

  thread = threading.Thread(target=call, daemon=True)
  thread.start()
  thread.join(seconds)
  if thread.is_alive():
    if fifo:  # A writer that opens and closes lets the blocked reader see end of file.
      os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    raise AssertionError(f"{function.__name__}{args} still running after {seconds} s")
  if "error" in outcome:
    raise outcome["error"]
  return outcome["value"]
