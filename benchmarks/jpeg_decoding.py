r"""What checking JPEG data strictly costs per image, against Pillow's decoding.

  python -m benchmarks.jpeg_decoding --num_images=500 --repeats=5

On the AVA-like image set (files read into memory first), in one process:

- Pillow: `imaging.decode_rgb` of `imaging.open_image`, at the job's draft
  size: how JPEGs were decoded before issue 15 (no check of libjpeg's warnings);
- strict: `imaging.decode_jpeg`, the job's decoding now (libjpeg-turbo through
  simplejpeg with warnings as errors, same pixels as Pillow);
- check alone: a second, strict decode at 1/8 scale, what keeping Pillow's
  decoding and checking separately would add;
- the blank check (`imaging.check_not_blank`) of the stored 256 x 256 image;
- the job's `imaging.process` as a whole (validate, decode, resize, blank
  check, encode).
"""

from absl import app
from absl import flags
import simplejpeg

from benchmarks import common
from nima_tf import imaging

common.define_flags(num_images=500, repeats=5)


def _read_all(image_set: common.ImageSet):
  datas = []
  for image_id in image_set.image_ids():
    with open(image_set.image_path(image_id), "rb") as f:
      datas.append(f.read())
  return datas


def _check_alone(data: bytes) -> None:
  width, height = imaging.open_image(data).size
  simplejpeg.decode_jpeg(data, min_factor=8, min_width=-(-width // 8),
                         min_height=-(-height // 8), strict=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  image_set = common.ensure_image_set(flags.FLAGS.work_dir, flags.FLAGS.num_images)
  datas = _read_all(image_set)
  size = imaging.DEFAULT_IMAGE_SIZE
  stored = [imaging.decode(data, size).image for data in datas]
  variants = {
      "Pillow decode (before)": (lambda d: imaging.decode_rgb(imaging.open_image(d), size),
                                 datas),
      "strict decode (now)": (lambda d: imaging.decode_jpeg(d, imaging.open_image(d), size),
                              datas),
      "check alone (1/8 scale)": (_check_alone, datas),
      "blank check of the stored image": (imaging.check_not_blank, stored),
      "imaging.process, whole (now)": (lambda d: imaging.process(d, size), datas),
  }

  def loop(function, inputs):
    for one in inputs:
      function(one)
    return len(inputs)

  load_before = common.machine_load()
  results = common.interleave(flags.FLAGS.repeats, [
      (name, lambda v=variant: common.measure(lambda: loop(*v)))
      for name, variant in variants.items()])
  baseline = results["Pillow decode (before)"]
  table = []
  for name, runs in results.items():
    table.append([
        name,
        common.Spread.of([r.per_cpu_second for r in runs]).format(),
        common.Spread.of([1000 / r.per_cpu_second for r in runs]).format(3),
        common.Spread.of([b.per_cpu_second / r.per_cpu_second
                          for r, b in zip(runs, baseline)]).format(2),
        common.Spread.of([r.others_cores for r in runs]).format(2)])
  kilobytes = sum(len(d) for d in datas) / len(datas) / 1024
  common.print_table(
      f"JPEG decoding, {len(datas)} AVA-like JPEGs (~{kilobytes:.0f} KB), draft size {size}, "
      f"{flags.FLAGS.repeats} repeats",
      ["variant", "images per CPU-second", "CPU ms per image", "CPU time / Pillow's",
       "cores busy with other processes"], table,
      notes=[f"Median (min-max); ratios per repeat. Before: {load_before}. "
             f"After: {common.machine_load()}."])


if __name__ == "__main__":
  app.run(main)
