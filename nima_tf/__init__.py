"""nima_tf: NIMA aesthetic scoring trained on AVA with TensorFlow."""

__version__ = "0.1.0"
