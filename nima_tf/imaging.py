"""Per-image work of the data job: validate, decode, orient, convert, resize, encode.

Pure functions on bytes, so the Beam job, the prediction CLI, the tests and the
benchmarks all run the same code. Invalid images raise `ava.Rejected` with the
reason the job records.
"""

import dataclasses
import io

from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

from nima_tf import ava

DEFAULT_IMAGE_SIZE = 256
DEFAULT_MIN_SIDE = 32
DEFAULT_MAX_PIXELS = 40_000_000
JPEG_QUALITY = 95
_BACKGROUND = (255, 255, 255)
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


@dataclasses.dataclass(frozen=True)
class ImageLimits:
  """What an image must satisfy to be used."""

  min_side: int = DEFAULT_MIN_SIDE
  max_pixels: int = DEFAULT_MAX_PIXELS


@dataclasses.dataclass(frozen=True)
class ProcessedImage:
  """A validated image, resized and re-encoded as JPEG."""

  encoded: bytes
  height: int
  width: int
  original_height: int
  original_width: int
  original_bytes: int
  original_format: str


def open_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Image.Image:
  """Opens image bytes of any format Pillow reads, checking size before decoding.

  Only the header is read here, so a decompression bomb is refused before a
  pixel is decoded. Raises `ava.Rejected` (empty_file, undecodable, too_large,
  too_small).
  """
  if not data:
    raise ava.Rejected(ava.Reason.EMPTY_FILE, "the file has 0 bytes")
  try:
    image = Image.open(io.BytesIO(data))
  except Image.DecompressionBombError as error:
    raise ava.Rejected(ava.Reason.TOO_LARGE, str(error)) from None
  except UnidentifiedImageError:
    raise ava.Rejected(ava.Reason.UNDECODABLE,
                       "not an image Pillow reads: unknown file format") from None
  except (OSError, SyntaxError, ValueError) as error:
    raise ava.Rejected(ava.Reason.UNDECODABLE, f"not an image Pillow reads: {error}") from None
  width, height = image.size
  if width * height > limits.max_pixels:
    raise ava.Rejected(ava.Reason.TOO_LARGE,
                       f"{width}x{height} is over {limits.max_pixels} pixels")
  if min(width, height) < limits.min_side:
    raise ava.Rejected(ava.Reason.TOO_SMALL,
                       f"{width}x{height} has a side under {limits.min_side} px")
  return image


def decode_rgb(image: Image.Image, draft_size: int = 0) -> Image.Image:
  """Fully decodes an opened image to upright 8-bit RGB.

  EXIF orientation is applied; CMYK, grayscale, palette, 16-bit and alpha
  images become RGB (transparent areas on white). With `draft_size`, JPEGs are
  decoded by libjpeg at the smallest power-of-two reduction that still keeps
  both sides at least `draft_size` px: every byte is still decoded, so corrupt
  files are still caught, at a fraction of the cost for large originals.
  Raises `ava.Rejected` (undecodable) when the pixel data is broken. The
  opened image is decoded and turned upright in place, and an image that is
  already RGB is returned as is: two copies of the full-size pixels cost up
  to a fifth of the time per image.
  """
  try:
    if draft_size and image.format == "JPEG":
      image.draft("RGB", (draft_size, draft_size))
    image.load()
    ImageOps.exif_transpose(image, in_place=True)
    if image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info):
      rgba = image.convert("RGBA")
      background = Image.new("RGB", rgba.size, _BACKGROUND)
      background.paste(rgba, mask=rgba.getchannel("A"))
      return background
    if image.mode.startswith("I;16") or image.mode == "I":
      image = image.point(lambda value: value * (1 / 256)).convert("L")
    return image if image.mode == "RGB" else image.convert("RGB")
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
    raise ava.Rejected(ava.Reason.UNDECODABLE, f"pixel data is broken: {error}") from None


def resize(image: Image.Image, image_size: int) -> Image.Image:
  """Resizes to `image_size` x `image_size`, ignoring aspect ratio, as NIMA does."""
  return image.resize((image_size, image_size), Image.Resampling.BILINEAR,
                      reducing_gap=2.0)


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def upright_size(image: Image.Image) -> tuple:
  """(width, height) of an opened image once its EXIF orientation is applied."""
  width, height = image.size
  if image.getexif().get(_EXIF_ORIENTATION, 1) in _TRANSPOSING_ORIENTATIONS:
    return height, width
  return width, height


def process(data: bytes,
            image_size: int = DEFAULT_IMAGE_SIZE,
            limits: ImageLimits = ImageLimits()) -> ProcessedImage:
  """Validates, decodes and resizes one image file's bytes into a stored JPEG."""
  image = open_image(data, limits)
  original_format = (image.format or "unknown").lower()
  original_width, original_height = upright_size(image)
  resized = resize(decode_rgb(image, draft_size=image_size), image_size)
  return ProcessedImage(
      encoded=encode_jpeg(resized),
      height=image_size,
      width=image_size,
      original_height=original_height,
      original_width=original_width,
      original_bytes=len(data),
      original_format=original_format,
  )
