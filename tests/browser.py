"""Headless Chromium for tests and benchmarks: the system's browser, driven by Playwright.

Playwright never downloads a browser here: it launches Debian's `chromium`
(`apt-get install chromium`), or the executable named by $NIMA_TF_CHROMIUM.
"""

import os
import shutil
from typing import Optional

CHROMIUM_ENV = "NIMA_TF_CHROMIUM"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")


def executable() -> Optional[str]:
  """Chromium's path: $NIMA_TF_CHROMIUM, else `chromium` on PATH; None when neither."""
  return os.environ.get(CHROMIUM_ENV) or shutil.which("chromium")


def launch(playwright):
  """A headless Chromium with a fresh profile; RuntimeError with what to install if missing."""
  path = executable()
  if not path:
    raise RuntimeError(f"headless Chromium is needed: `apt-get install chromium`, or set "
                       f"{CHROMIUM_ENV} to its path")
  return playwright.chromium.launch(executable_path=path, args=list(FLAGS))
