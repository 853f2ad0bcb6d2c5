"""nima_tf: NIMA aesthetic scoring trained on AVA with TensorFlow.

`import nima_tf` is cheap: TensorFlow is imported on first use of the API
(`nima_tf.load_scorer`, from `nima_tf.api`), so that the data job's workers
and `--version` never load it. Loading `nima.keras` with Keras directly needs
NIMA's registered layer, loss and metrics: `import nima_tf.model` first.
"""

__version__ = "0.1.0"

_API = ("load_scorer", "PhotoScorer", "Result", "Score", "Failure")


def __getattr__(name):
  if name in _API:
    from nima_tf import api  # pylint: disable=g-import-not-at-top
    return getattr(api, name)
  raise AttributeError(f"module 'nima_tf' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_API))
