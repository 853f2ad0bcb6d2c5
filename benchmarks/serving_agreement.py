r"""How far the SavedModel's scores are from `predict`'s, on photos like and unlike AVA.

  python -m benchmarks.serving_agreement --model_dir=runs/1 --num_images=120

Writes `--num_images` photos of each kind to a temporary folder: sample-like
synthetic photos (`synthetic.make_image`, 200-1200 px), PIL-drawn line
patterns on flat colour (JPEG, quality 60-97) and uniform noise (PNG); scores
them with `predict.score_files` and with the exported SavedModel on their
bytes; prints, per kind, the images whose stored-size pixels differ and the
largest and mean absolute difference of mean scores.
"""

import os
import tempfile

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from PIL import ImageDraw
import tensorflow as tf

from nima_tf import export
from nima_tf import predict
from nima_tf import sample
from nima_tf import scoring
from nima_tf import synthetic

flags.DEFINE_string("model_dir", None, "Run folder or .keras file. Default: the sample's run.")
flags.DEFINE_integer("num_images", 40, "Photos of each kind.", lower_bound=1)


def _lines(rng, path: str) -> None:
  width, height = (int(side) for side in rng.integers(100, 1500, 2))
  image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 256, 3)))
  draw = ImageDraw.Draw(image)
  for _ in range(20):
    draw.line([(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)],
              width=int(rng.integers(1, 30)), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
  image.save(path, quality=int(rng.integers(60, 98)))


def _noise(rng, path: str) -> None:
  width, height = (int(side) for side in rng.integers(64, 1200, 2))
  Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)


def _photos(folder: str, count: int) -> dict:
  rng = np.random.default_rng(0)
  kinds = {"sample-like": [], "drawn lines": [], "noise": []}
  for index in range(count):
    _, jpeg = synthetic.make_image(0, 50_000 + index, size_range=(200, 1200))
    kinds["sample-like"].append(os.path.join(folder, f"sample{index}.jpg"))
    with open(kinds["sample-like"][-1], "wb") as f:
      f.write(jpeg)
    kinds["drawn lines"].append(os.path.join(folder, f"lines{index}.jpg"))
    _lines(rng, kinds["drawn lines"][-1])
    kinds["noise"].append(os.path.join(folder, f"noise{index}.png"))
    _noise(rng, kinds["noise"][-1])
  return kinds


def main(argv) -> None:
  del argv
  scorer = scoring.load(flags.FLAGS.model_dir or sample.output_dir())
  with tempfile.TemporaryDirectory() as folder:
    export.export_saved_model(scorer, os.path.join(folder, "saved_model"))
    serve = tf.saved_model.load(os.path.join(folder, "saved_model")).signatures[export.SIGNATURE]
    for kind, paths in _photos(folder, flags.FLAGS.num_images).items():
      encoded = [open(path, "rb").read() for path in paths]
      differing = sum(
          not np.array_equal(predict.decode(data, scorer.stored_size),
                             scoring.decode_to_stored(tf.constant(data), scorer.stored_size))
          for data in encoded)
      scores, failures = predict.score_files(scorer, paths)
      scored = {score.path for score in scores}
      served = serve(image_bytes=tf.constant(
          [data for path, data in zip(paths, encoded) if path in scored]))["mean"].numpy()
      difference = np.abs(served - np.array([score.mean for score in scores]))
      print(f"{kind}: {len(scores)} scored ({len(failures)} rejected by predict), "
            f"{differing} with different stored pixels; mean scores "
            f"{min(s.mean for s in scores):.3f}-{max(s.mean for s in scores):.3f}, "
            f"|served - predict| max {difference.max():.2e}, mean {difference.mean():.2e}")


if __name__ == "__main__":
  app.run(main)
