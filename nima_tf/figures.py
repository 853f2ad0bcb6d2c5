"""matplotlib without a display, and figures as PNG bytes (for any file system)."""

import io


def pyplot():
  """matplotlib's pyplot on the Agg backend (no display needed), imported on first use."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def to_png(figure, dpi: int = 100) -> bytes:
  """The figure, laid out tight, as PNG bytes; the figure is closed."""
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=dpi)
  pyplot().close(figure)
  return buffer.getvalue()
