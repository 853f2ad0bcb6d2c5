"""A synthetic AVA: procedural photos whose ratings follow from how they look.

`generate` writes a folder in the exact layout of the AVA download (AVA.txt,
tags.txt, challenges.txt, the generic train/test id lists and
`images/<image_id>.jpg`), so that every tool of nima_tf runs end to end
without the tens of gigabytes of the original, and so that a model trained on it can be tested
for *learning*: each rating is a function of what the image shows.

Each photo `index` of a `seed` is drawn from its own random streams
(`np.random.SeedSequence([seed, index])`), so photo k is the same whatever
the number of photos, and the same seed always gives the same bytes.

How a rating is derived
-----------------------
1. Six latent quality factors are drawn, each standard normal (higher is
   better): sharpness, exposure, noise, contrast, colour and composition.
2. Each factor sets one visible, mostly global property of the rendering
   (`look`), monotonically and log-linearly, with `s = max(width, height)`:
     - blur:     Gaussian blur of sd `0.006 s exp(-0.8 sharpness)` pixels;
     - exposure: `0.7 exp(-0.8 exposure)` stops over or under (a fair coin),
                 i.e. pixel values times `2^(+-stops / 2.2)`, clipped;
     - noise:    additive grain (cells of `s / 160` px) of sd
                 `0.03 exp(-0.9 noise)` of the full range;
     - contrast: luminance contrast around mid-grey times `0.85 exp(0.3 contrast)`;
     - colour:   saturation (chroma) times `exp(0.4 colour)`;
     - composition: the subject sits `0.3 (1 - Phi(composition))` of the frame
                 away from a rule-of-thirds point, towards the centre or out
                 of the frame (Phi: the standard normal CDF).
   The scene itself (sky and ground gradients, a textured ground, buildings
   and hills, a shaded ball as subject) is first normalised to the same
   luminance mean, luminance sd and chroma, so that the factors, not the
   scene, decide brightness, contrast and colourfulness.
3. The quality score is the weighted sum, scaled to be standard normal:
     q = (1.0 exposure + 0.8 contrast + 0.8 noise + 0.8 sharpness
          + 0.7 colour + 0.3 composition) / ||w||.
4. The mean rating is `quality_to_mean(sqrt(1 - 0.2^2) q + 0.2 e)`, with
   `e` standard normal label noise (4% of the variance) and
   `quality_to_mean(z) = clip(5.4 + 0.75 z, 1.5, 9.5)`: as in AVA, about
   95% of the means lie in 4..7, and about 1% below 3.6 or above 7.1.
5. The spread of opinions is `clip(1.15 + 0.12 (|contrast| + |colour|)
   + 0.08 e', 1, 2)`: strongly stylised photos are more controversial.
6. The ten vote probabilities are a normal density of that spread at the
   scores 1..10, centred so that their expected score is the mean rating
   (`vote_probabilities`); the number of votes is `90 + Gamma(shape 6,
   scale 20)` (mean 210, at most 450), and the counts are one multinomial draw.

Usage:
  python -m nima_tf.synthetic --out /tmp/AVA_dataset --num_images 3000
"""

import colorsys
import dataclasses
import functools
import math
import multiprocessing
import os
import shutil
import statistics
import time
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

from absl import flags
import numpy as np
from PIL import Image
from PIL import ImageChops
from PIL import ImageFilter
from scipy import optimize

from nima_tf import ava
from nima_tf import cli
from nima_tf import imaging
from nima_tf import ratings

SIZE_RANGE = (300, 800)
JPEG_QUALITY = 90
TEST_FRACTION = 0.08
NUM_TAGS = 66
NUM_CHALLENGES = 120
MIN_VOTES = 90
MAX_VOTES = 450
PROGRESS_EVERY = 500

WEIGHTS = {
    "exposure": 1.0,
    "contrast": 0.8,
    "noise": 0.8,
    "sharpness": 0.8,
    "colour": 0.7,
    "composition": 0.3,
}
LABEL_NOISE = 0.2
MEAN_RATING = 5.4
SD_RATING = 0.75
MEAN_RANGE = (1.5, 9.5)

# The canonical look of a scene before degradation, in [0, 1] sRGB units.
MID_GREY = 0.45
LUMA_SD = 0.18
CHROMA_RMS = 0.12
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
GRAIN_CELLS = 160

# Image ids are an affine bijection of the index modulo this prime, so they
# look random, stay distinct and do not depend on the number of photos.
_ID_MODULUS = 999983

_PARTIAL_AVA_TXT = ava.AVA_TXT + ".partial"
_OWN_ENTRIES = (ava.AVA_TXT, _PARTIAL_AVA_TXT, ava.TAGS_TXT, ava.CHALLENGES_TXT,
                ava.LISTS_DIR, ava.IMAGES_DIR)

_TAG_PLACES = ("Harbour", "Meadow", "Rooftop", "Canyon", "Orchard", "Tundra")
_TAG_THEMES = ("Geometry", "Light", "Motion", "Silhouettes", "Symmetry", "Textures",
               "Weather", "Reflections", "Solitude", "Rhythm", "Contrast")
_CHALLENGE_TONES = ("Amber", "Cobalt", "Crimson", "Ivory", "Jade", "Onyx", "Saffron",
                    "Silver", "Teal", "Violet")
_CHALLENGE_THINGS = ("Bridges", "Clocks", "Doors", "Feathers", "Glass", "Ladders",
                     "Lanterns", "Maps", "Shadows", "Spirals", "Stairs", "Windows")


@dataclasses.dataclass(frozen=True)
class Factors:
  """Latent quality factors of a photo, each standard normal, higher is better."""

  sharpness: float
  exposure: float
  noise: float
  contrast: float
  colour: float
  composition: float
  overexposed: bool  # The direction of the exposure error; it does not affect quality.


@dataclasses.dataclass(frozen=True)
class Look:
  """The rendering parameters that the factors set (see the module docstring)."""

  blur: float  # Gaussian sd, as a fraction of the longer side.
  stops: float  # Exposure error in stops, signed.
  noise: float  # Grain sd, as a fraction of the full range.
  contrast: float  # Luminance contrast multiplier.
  saturation: float  # Chroma multiplier.
  subject_offset: float  # Distance of the subject from a thirds point, in frames.


@dataclasses.dataclass(frozen=True)
class Entry:
  """One synthetic photo without its pixels: its AVA row, factors and split."""

  row: ava.Row
  factors: Factors
  is_test: bool


def image_id(seed: int, index: int) -> int:
  """The AVA-like image id (1..999983) of photo `index`, distinct per index."""
  scale, shift = np.random.default_rng([seed]).integers(1, _ID_MODULUS, size=2)
  return int((int(scale) * index + int(shift)) % _ID_MODULUS) + 1


def draw_factors(rng: np.random.Generator) -> Factors:
  """Independent standard normal factors (in `Factors` field order) and a coin."""
  values = rng.standard_normal(6)
  return Factors(*(float(v) for v in values), overexposed=bool(rng.random() < 0.5))


def quality(factors: Factors) -> float:
  """The standard normal quality score: the normalised weighted sum of factors."""
  total = sum(weight * getattr(factors, name) for name, weight in WEIGHTS.items())
  return total / math.sqrt(sum(weight**2 for weight in WEIGHTS.values()))


def quality_to_mean(score: float) -> float:
  """Mean rating of a standard normal score: AVA-like, mostly within 4..7."""
  return float(np.clip(MEAN_RATING + SD_RATING * score, *MEAN_RANGE))


def spread(factors: Factors, jitter: float = 0.0) -> float:
  """The sd of opinions: stylised (extreme contrast or colour) photos divide voters."""
  value = 1.15 + 0.12 * (abs(factors.contrast) + abs(factors.colour)) + 0.08 * jitter
  return float(np.clip(value, 1.0, 2.0))


def vote_probabilities(mean: float, sd: float) -> np.ndarray:
  """A normal density of `sd` at scores 1..10 whose expected score is `mean`."""
  if not ratings.SCORES[0] < mean < ratings.SCORES[-1]:
    raise ValueError(f"mean rating must lie strictly between 1 and 10, got {mean}")

  def density(centre):
    return ratings.normalize(np.exp(-0.5 * ((ratings.SCORES - centre) / sd)**2))

  centre = optimize.brentq(lambda c: ratings.mean_score(density(c)) - mean, -20.0, 30.0)
  return density(centre)


def look(factors: Factors) -> Look:
  stops = 0.7 * math.exp(-0.8 * factors.exposure)
  return Look(
      blur=0.006 * math.exp(-0.8 * factors.sharpness),
      stops=stops if factors.overexposed else -stops,
      noise=0.03 * math.exp(-0.9 * factors.noise),
      contrast=0.85 * math.exp(0.3 * factors.contrast),
      saturation=math.exp(0.4 * factors.colour),
      subject_offset=0.3 * (1.0 - statistics.NormalDist().cdf(factors.composition)),
  )


def _streams(seed: int, index: int) -> Tuple[np.random.Generator, np.random.Generator]:
  """Independent generators for the ratings and for the pixels of one photo."""
  if seed < 0 or index < 1:
    raise ValueError(f"need seed >= 0 and index >= 1, got seed={seed}, index={index}")
  children = np.random.SeedSequence([seed, index]).spawn(2)
  return np.random.default_rng(children[0]), np.random.default_rng(children[1])


def make_entry(seed: int, index: int) -> Entry:
  """The factors, votes, tags, challenge and split of a photo, without rendering it."""
  rng, _ = _streams(seed, index)
  factors = draw_factors(rng)
  score = math.sqrt(1 - LABEL_NOISE**2) * quality(factors) + LABEL_NOISE * rng.standard_normal()
  probabilities = vote_probabilities(quality_to_mean(score),
                                     spread(factors, rng.standard_normal()))
  num_votes = min(MIN_VOTES + int(round(rng.gamma(6.0, 20.0))), MAX_VOTES)
  counts = rng.multinomial(num_votes, probabilities)
  num_tags = rng.choice(3, p=(0.1, 0.3, 0.6))
  tags = sorted(rng.choice(np.arange(1, NUM_TAGS + 1), size=num_tags, replace=False))
  tags = (list(tags) + [0, 0])[:2]
  row = ava.Row(
      index=index,
      image_id=image_id(seed, index),
      counts=tuple(int(c) for c in counts),
      tags=(int(tags[0]), int(tags[1])),
      challenge=int(rng.integers(1, NUM_CHALLENGES + 1)),
  )
  return Entry(row=row, factors=factors, is_test=bool(rng.random() < TEST_FRACTION))


def _frame_size(rng: np.random.Generator, size_range: Tuple[int, int]) -> Tuple[int, int]:
  """(width, height): mostly landscape, some portrait and square, like AVA."""
  longer = int(rng.integers(size_range[0], size_range[1] + 1))
  aspect = float(rng.choice([4 / 3, 3 / 2, 16 / 10, 16 / 9, 5 / 4]))
  shorter = max(1, int(round(longer / aspect)))
  orientation = rng.random()
  if orientation < 0.65:
    return longer, shorter
  if orientation < 0.9:
    return shorter, longer
  return longer, longer


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
  return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), np.float32)


def _smooth_field(rng: np.random.Generator, cells: Tuple[int, int], width: int,
                  height: int) -> np.ndarray:
  """A smooth random field in [0, 1] of shape (height, width), e.g. clouds."""
  coarse = rng.random(cells).astype(np.float32)
  return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC))


def _box(image: np.ndarray, cx: float, cy: float, rx: float, ry: float):
  """The clipped pixel window around a shape and its coordinates in radii."""
  height, width = image.shape[:2]
  r0, r1 = max(0, int(cy - ry)), min(height, int(cy + ry) + 1)
  c0, c1 = max(0, int(cx - rx)), min(width, int(cx + rx) + 1)
  v = (np.arange(r0, r1, dtype=np.float32)[:, None] - cy) / ry
  u = (np.arange(c0, c1, dtype=np.float32)[None, :] - cx) / rx
  return image[r0:r1, c0:c1], u, v


def _paint_ellipse(image, cx, cy, rx, ry, colour, shading=0.0, upper_half=False):
  """Fills an ellipse (or its upper half), lit from the upper left, in place."""
  window, u, v = _box(image, cx, cy, rx, ry)
  inside = (u**2 + v**2 <= 1.0) & ((v <= 0) | (not upper_half))
  light = 1.0 - shading * (u + v) / 2
  window[inside] = (colour * light[..., None])[inside]


def _paint_building(image, rng, cx, base, half_width, building_height, colour):
  """A rectangle standing on `base` with a grid of lit windows, in place."""
  window, u, v = _box(image, cx, base - building_height / 2, half_width, building_height / 2)
  period = float(rng.uniform(0.12, 0.25))
  lit = ((u + 1) / period % 1 < 0.5) & ((v + 1) / (period * 0.7) % 1 < 0.45)
  lit &= (np.abs(u) < 0.85) & (v > -0.9) & (v < 0.8)
  glass = _rgb(rng.uniform(0.1, 0.16), 0.5, 0.95)
  window[...] = np.where(lit[..., None], glass, colour)


def _scene(rng: np.random.Generator, width: int, height: int, subject_offset: float):
  """A landscape: sky, textured ground, buildings and hills, and a ball as subject."""
  y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
  x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
  level = rng.uniform(0.35, 0.7)
  horizon = level + rng.uniform(-0.15, 0.15) * (x - 0.5)
  sky_hue = rng.uniform(0.52, 0.68) if rng.random() < 0.7 else rng.uniform(-0.05, 0.12)
  top = _rgb(sky_hue, rng.uniform(0.4, 0.8), rng.uniform(0.5, 0.85))
  low = _rgb(sky_hue + rng.uniform(-0.05, 0.05), rng.uniform(0.1, 0.35), rng.uniform(0.85, 1.0))
  depth = np.minimum(y / level, 1)
  clouds = _smooth_field(rng, (3, 5), width, height) * (rng.uniform(0.0, 0.35) * (1 - depth))
  image = (top + depth * (low - top))[:, None, :] + clouds[..., None]

  ground_hue = rng.choice([rng.uniform(0.22, 0.38), rng.uniform(0.06, 0.12), rng.uniform(0.5, 0.6)])
  far = _rgb(ground_hue, rng.uniform(0.3, 0.6), rng.uniform(0.4, 0.7))
  near = _rgb(ground_hue + rng.uniform(-0.04, 0.04), rng.uniform(0.5, 0.9), rng.uniform(0.2, 0.5))
  nearness = np.clip((y - level) / (1 - level), 0, 1)
  furrows = np.sin(2 * np.pi * rng.uniform(15, 35) * (x + rng.uniform(-0.5, 0.5) * y))
  ground = (far + nearness * (near - far))[:, None, :] * (1 + 0.18 * furrows)[..., None]
  np.copyto(image, ground, where=(y > horizon)[..., None])

  scale = min(width, height)
  for _ in range(int(rng.integers(2, 6))):
    cx = rng.uniform(0, width)
    base = float(np.interp(cx, np.arange(width), horizon[0])) * height
    colour = _rgb(rng.uniform(0, 1), rng.uniform(0.1, 0.5), rng.uniform(0.2, 0.8))
    if rng.random() < 0.5:
      _paint_building(image, rng, cx, base, rng.uniform(0.04, 0.12) * width,
                      rng.uniform(0.1, 0.35) * height, colour)
    else:
      _paint_ellipse(image, cx, base, rng.uniform(0.1, 0.3) * width,
                     rng.uniform(0.05, 0.2) * height, colour, shading=0.2, upper_half=True)

  angle = rng.uniform(0, 2 * np.pi)
  thirds = rng.choice([1 / 3, 2 / 3], size=2)
  cx = np.clip(thirds[0] + subject_offset * np.cos(angle), 0, 1) * width
  cy = np.clip(thirds[1] + subject_offset * np.sin(angle), 0, 1) * height
  radius = rng.uniform(0.08, 0.16) * scale
  colour = _rgb(sky_hue + 0.5 + rng.uniform(-0.1, 0.1), rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0))
  _paint_ellipse(image, cx, cy, radius, radius, colour, shading=0.6)
  return image


def _develop(scene: np.ndarray, params: Look) -> Image.Image:
  """Tones a scene: normalised to the canonical look, then colour, contrast, exposure.

  Normalising gives every scene the same luminance mean (`MID_GREY`) and sd
  (`LUMA_SD`) and chroma RMS (`CHROMA_RMS`); saturation then scales chroma,
  contrast scales luminance around mid-grey and exposure scales both. All are
  affine in luminance and chroma, so they are folded into one map.
  """
  luma = scene @ LUMA
  chroma = scene - luma[..., None]
  chroma_rms = math.sqrt(float(np.vdot(chroma, chroma)) / chroma.size)
  luma_gain = LUMA_SD / max(float(luma.std()), 1e-3)
  gain = 255 * 2**(params.stops / 2.2)
  luma_scale = gain * params.contrast * luma_gain
  offset = gain * MID_GREY - luma_scale * float(luma.mean()) + 0.5
  chroma *= gain * params.contrast * params.saturation * CHROMA_RMS / max(chroma_rms, 1e-3)
  chroma += (luma_scale * luma + offset)[..., None]
  return Image.fromarray(np.clip(chroma, 0, 255, out=chroma).astype(np.uint8))


def _grain(rng: np.random.Generator, width: int, height: int, sd: float) -> Image.Image:
  """Film-like grain, coarse enough to survive downscaling, coded around 128."""
  cell = max(1.0, max(width, height) / GRAIN_CELLS)
  shape = (math.ceil(height / cell), math.ceil(width / cell))
  field = rng.standard_normal(shape + (1,)) + 0.35 * rng.standard_normal(shape + (3,))
  coded = np.clip(128.5 + sd * 255 * field, 0, 255).astype(np.uint8)
  return Image.fromarray(coded).resize((width, height), Image.BILINEAR)


def render(seed: int, index: int, factors: Factors,
           size_range: Tuple[int, int] = SIZE_RANGE) -> Image.Image:
  """The pixels of photo `index`: its scene, degraded as `factors` say.

  Any factors may be passed, so that tests can render the same scene better
  or worse.
  """
  _, rng = _streams(seed, index)
  params = look(factors)
  width, height = _frame_size(rng, size_range)
  image = _develop(_scene(rng, width, height, params.subject_offset), params)
  image = image.filter(ImageFilter.GaussianBlur(params.blur * max(width, height)))
  return ImageChops.add(image, _grain(rng, width, height, params.noise), offset=-128)


def make_image(seed: int, index: int, size_range: Tuple[int, int] = SIZE_RANGE,
               jpeg_quality: int = JPEG_QUALITY) -> Tuple[Entry, bytes]:
  """Photo `index` of `seed`: its entry and its JPEG bytes."""
  entry = make_entry(seed, index)
  return entry, imaging.encode_jpeg(render(seed, index, entry.factors, size_range),
                                    jpeg_quality)


def tag_names() -> list:
  """The synthetic names of tag ids 1..NUM_TAGS."""
  return [f"{place} {theme}" for place in _TAG_PLACES for theme in _TAG_THEMES]


def challenge_names() -> list:
  """The synthetic names of challenge ids 1..NUM_CHALLENGES."""
  return [f"{tone}_{thing}" for tone in _CHALLENGE_TONES for thing in _CHALLENGE_THINGS]


def is_complete(path: str) -> bool:
  """Whether `generate` finished writing `path`: AVA.txt is written last."""
  return os.path.isfile(os.path.join(path, ava.AVA_TXT))


def _clear(out_dir: str):
  """Removes what an earlier, maybe interrupted, `generate` left in `out_dir`."""
  foreign = sorted(set(os.listdir(out_dir)) - set(_OWN_ENTRIES))
  if foreign:
    raise FileExistsError(
        f"{out_dir} holds files that a synthetic AVA folder does not ({foreign[:5]}); "
        "pass a new or empty folder")
  for name in _OWN_ENTRIES:
    path = os.path.join(out_dir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)


def _write_lines(path: str, lines: Iterable[str]):
  with open(path, "w") as f:
    f.writelines(f"{line}\n" for line in lines)


def _write_photo(index: int, out_dir: str, seed: int, size_range: Tuple[int, int],
                 jpeg_quality: int) -> Entry:
  entry, jpeg = make_image(seed, index, size_range, jpeg_quality)
  with open(ava.image_path(os.path.join(out_dir, ava.IMAGES_DIR), entry.row.image_id), "wb") as f:
    f.write(jpeg)
  return entry


def _map(function: Callable, items: Iterable, processes: int) -> Iterator:
  """`map`, in order, over `processes` spawned processes when more than one."""
  if processes == 1:
    yield from map(function, items)
    return
  # Spawn, not fork: callers (e.g. training) may already run TensorFlow threads.
  with multiprocessing.get_context("spawn").Pool(processes) as pool:
    yield from pool.imap(function, items, chunksize=8)


def generate(out_dir: str, num_images: int, seed: int = 0,
             size_range: Tuple[int, int] = SIZE_RANGE, jpeg_quality: int = JPEG_QUALITY,
             processes: Optional[int] = None) -> List[Entry]:
  """Writes a synthetic AVA folder of `num_images` photos to `out_dir`.

  Whatever an earlier, interrupted run left there is removed first; AVA.txt is
  written last and atomically, so `is_complete` is true only for a whole folder.

  Args:
    out_dir: the folder to write, created if needed; it must hold nothing but a
      previous synthetic AVA folder.
    num_images: how many photos, 1..999982.
    seed: the seed; the same seed gives the same bytes.
    size_range: (min, max) of the longer image side in pixels.
    jpeg_quality: JPEG quality of the images, 1..95.
    processes: worker processes; by default one per CPU for large folders.

  Returns:
    The entries of the photos (rows, factors, splits), in index order.
  """
  if not 1 <= num_images < _ID_MODULUS:
    raise ValueError(f"num_images must be in 1..{_ID_MODULUS - 1}, got {num_images}")
  if not 16 <= size_range[0] <= size_range[1]:
    raise ValueError(f"size_range must be (min, max) with 16 <= min <= max, got {size_range}")
  if not 1 <= jpeg_quality <= 95:
    raise ValueError(f"jpeg_quality must be in 1..95, got {jpeg_quality}")
  if processes is None:
    processes = max(1, min(os.cpu_count() or 1, num_images // 200))

  os.makedirs(out_dir, exist_ok=True)
  _clear(out_dir)
  os.makedirs(os.path.join(out_dir, ava.IMAGES_DIR))
  os.makedirs(os.path.join(out_dir, ava.LISTS_DIR))
  _write_lines(os.path.join(out_dir, ava.TAGS_TXT),
               (f"{i} {name}" for i, name in enumerate(tag_names(), start=1)))
  _write_lines(os.path.join(out_dir, ava.CHALLENGES_TXT),
               (f"{i} {name}" for i, name in enumerate(challenge_names(), start=1)))

  start = time.monotonic()
  work = functools.partial(_write_photo, out_dir=out_dir, seed=seed,
                           size_range=tuple(size_range), jpeg_quality=jpeg_quality)
  entries = []
  for entry in _map(work, range(1, num_images + 1), processes):
    entries.append(entry)
    if len(entries) % PROGRESS_EVERY == 0:
      print(f"  {len(entries)}/{num_images} images ({time.monotonic() - start:.0f} s)",
            flush=True)

  _write_lines(os.path.join(out_dir, ava.TEST_LIST),
               (e.row.image_id for e in entries if e.is_test))
  _write_lines(os.path.join(out_dir, ava.TRAIN_LIST),
               (e.row.image_id for e in entries if not e.is_test))
  partial = os.path.join(out_dir, _PARTIAL_AVA_TXT)
  _write_lines(partial, (ava.format_row(e.row) for e in entries))
  os.replace(partial, os.path.join(out_dir, ava.AVA_TXT))
  print(f"Wrote {num_images} synthetic AVA images to {out_dir} "
        f"in {time.monotonic() - start:.1f} s", flush=True)
  return entries


def _define_flags():
  flags.DEFINE_string("out", None, "Folder to write the synthetic AVA data set to.",
                      required=True)
  flags.DEFINE_integer("num_images", 3000, "Number of photos.", lower_bound=1)
  flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives the same bytes.",
                       lower_bound=0)


def main(argv):
  cli.unexpected_arguments(argv)
  try:
    generate(flags.FLAGS.out, flags.FLAGS.num_images, seed=flags.FLAGS.seed)
  except OSError as error:
    raise cli.Failure(f"cannot write the sample to --out={flags.FLAGS.out}: {error}") from None


def run() -> None:
  """The `nima-synthetic` command: `main` with this module's flags.

  Flags are defined only when run as a program, so that importing this
  module from another program never clashes with that program's flags.
  """
  cli.command(main, _define_flags)


if __name__ == "__main__":
  run()
