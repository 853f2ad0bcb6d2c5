"""What every command line of nima_tf shares: exit statuses and flag parsing."""

import sys
from typing import List

from absl import flags

SOME_FAILED = 1
USAGE_ERROR = 2


def parse_flags(argv: List[str]) -> List[str]:
  """absl's parsing, exiting with status 2 (a usage error) and one line on bad flags."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    print(f"FATAL Flags parsing error: {error} (--helpfull lists the flags)", file=sys.stderr)
    sys.exit(USAGE_ERROR)
