"""Per-image work of the data job: validate, decode, orient, convert, resize, encode.

Pure functions on bytes, so the Beam job, the prediction CLI, the tests and the
benchmarks all run the same code. Invalid images raise `ava.Rejected` with the
reason the job records.

JPEGs are decoded by libjpeg-turbo through `simplejpeg` in strict mode: a
file that libjpeg only warns about (a scan cut short and padded with the
end-of-image marker, zeroed or extraneous bytes in the scan, a header that
claims more pixels than the scan holds) is `undecodable`, whereas Pillow and
`tf.io.decode_jpeg` silently fill the missing blocks with flat colour. The
pixels are the same as Pillow's to the bit (same library, DCT and upsampling).
"""

import dataclasses
import io

from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError
import simplejpeg

from nima_tf import ava

DEFAULT_IMAGE_SIZE = 256
DEFAULT_MIN_SIDE = 32
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_FILE_BYTES = 50_000_000
# A stored image whose every channel spans at most this many grey levels has no picture.
BLANK_MAX_RANGE = 4
# The detail of a `blank_image` rejection, with the widest span: also a graph-side template.
BLANK_DETAIL = ("every channel spans at most {} grey levels "
                f"(blank at <= {BLANK_MAX_RANGE}): no picture")
JPEG_QUALITY = 95
_JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a camera JPEG with extra frames after the first.
_CMYK_COLORSPACES = ("CMYK", "YCCK")
_DRAFT_SCALES = (8, 4, 2, 1)
_BACKGROUND = (255, 255, 255)
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


@dataclasses.dataclass(frozen=True)
class ImageLimits:
  """What an image must satisfy to be used."""

  min_side: int = DEFAULT_MIN_SIDE
  max_pixels: int = DEFAULT_MAX_PIXELS
  max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


@dataclasses.dataclass(frozen=True)
class DecodedImage:
  """A validated image, upright RGB at the stored size, with facts of the original."""

  image: Image.Image
  original_height: int
  original_width: int
  original_format: str


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
  """Fully decodes an opened image to upright 8-bit RGB with Pillow.

  `decode` calls it for every format but JPEG (see `decode_jpeg`, which
  hands it CMYK JPEGs once checked). EXIF orientation is applied; CMYK,
  grayscale, palette, 16-bit and alpha images become RGB (transparent areas
  on white). With `draft_size`, JPEGs are decoded by libjpeg at the smallest
  power-of-two reduction that still keeps both sides at least `draft_size` px
  (every byte is still read), at a fraction of the cost for large originals.
  Raises `ava.Rejected` (undecodable) when Pillow finds the pixel data broken;
  libjpeg's warnings go unseen here. The
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


def draft_scale(size: tuple, draft_size: int) -> int:
  """The reduction of Pillow's `Image.draft` for a (width, height) JPEG.

  The largest of 8, 4, 2, 1 that keeps both sides at least `draft_size` (1 if 0).
  """
  fits = min(side // draft_size for side in size) if draft_size else 1
  return next((scale for scale in _DRAFT_SCALES if fits >= scale), 1)


def _decode_jpeg_strictly(data: bytes, size: tuple, colorspace: str, scale: int):
  """libjpeg-turbo's decode at 1/`scale`, raising `ava.Rejected` on any libjpeg warning."""
  width, height = size
  try:
    return simplejpeg.decode_jpeg(data, colorspace=colorspace, min_factor=scale,
                                  min_width=-(-width // scale), min_height=-(-height // scale),
                                  strict=True)
  except ValueError as error:
    raise ava.Rejected(ava.Reason.UNDECODABLE, f"broken JPEG data: libjpeg: {error}") from None


def decode_jpeg(data: bytes, image: Image.Image, draft_size: int = 0) -> Image.Image:
  """Decodes the bytes of an opened JPEG to upright RGB, as `decode_rgb` does, but strictly.

  Every scan is decoded (at Pillow's draft reduction for `draft_size`) and
  any libjpeg warning rejects the file (`undecodable`). CMYK JPEGs are checked
  the same way at 1/8 scale, then decoded by Pillow, which converts CMYK.
  A header that TurboJPEG's API cannot describe (an unusual chroma
  subsampling) leaves the file to Pillow alone.
  """
  try:
    colorspace = simplejpeg.decode_jpeg_header(data)[2]
  except ValueError:
    return decode_rgb(image, draft_size)
  if colorspace in _CMYK_COLORSPACES:
    _decode_jpeg_strictly(data, image.size, "CMYK", _DRAFT_SCALES[0])
    return decode_rgb(image, draft_size)
  pixels = _decode_jpeg_strictly(data, image.size, "RGB", draft_scale(image.size, draft_size))
  decoded = Image.fromarray(pixels)
  decoded.info.update(image.info)  # EXIF and XMP, for the orientation.
  try:
    ImageOps.exif_transpose(decoded, in_place=True)
  except (OSError, SyntaxError, ValueError) as error:
    raise ava.Rejected(ava.Reason.UNDECODABLE, f"broken EXIF: {error}") from None
  return decoded


def check_not_blank(image: Image.Image) -> None:
  """Rejects (`blank_image`) an RGB image whose pixels are all but constant: no picture.

  Band by band, so that a photo is cleared by its first band (a third of the cost).
  """
  spans = []
  for band in range(len(image.getbands())):
    low, high = image.getchannel(band).getextrema()
    if high - low > BLANK_MAX_RANGE:
      return
    spans.append(high - low)
  raise ava.Rejected(ava.Reason.BLANK_IMAGE, BLANK_DETAIL.format(max(spans)))


def resize(image: Image.Image, image_size: int) -> Image.Image:
  """Resizes to `image_size` x `image_size`, ignoring aspect ratio, as NIMA does.

  Pillow's bilinear convolution without its `reducing_gap` box pre-reduction,
  so that the serving graph computes the same pixels (`scoring.resize_as_pillow`).
  """
  return image.resize((image_size, image_size), Image.Resampling.BILINEAR)


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


def decode(data: bytes,
           image_size: int = DEFAULT_IMAGE_SIZE,
           limits: ImageLimits = ImageLimits()) -> DecodedImage:
  """Validates one image file's bytes and decodes them to upright RGB at the stored size.

  Raises `ava.Rejected` (empty_file, undecodable, too_small, too_large,
  blank_image).
  """
  image = open_image(data, limits)
  original_width, original_height = upright_size(image)
  if image.format in _JPEG_FORMATS:
    rgb = decode_jpeg(data, image, draft_size=image_size)
  else:
    rgb = decode_rgb(image, draft_size=image_size)
  resized = resize(rgb, image_size)
  check_not_blank(resized)
  return DecodedImage(image=resized, original_height=original_height,
                      original_width=original_width,
                      original_format=(image.format or "unknown").lower())


def prepare(image: Image.Image, image_size: int = DEFAULT_IMAGE_SIZE,
            limits: ImageLimits = ImageLimits()) -> Image.Image:
  """An image already opened or made in memory -> upright RGB at the stored size.

  `decode`'s steps after reading the file (EXIF orientation, RGB, resize,
  the size and blank checks), on a copy: the caller's image is left as is.
  Raises `ava.Rejected` (undecodable, too_small, too_large, blank_image).
  """
  width, height = image.size
  if min(width, height) < limits.min_side:
    raise ava.Rejected(ava.Reason.TOO_SMALL,
                       f"{width}x{height} has a side under {limits.min_side} px")
  if width * height > limits.max_pixels:
    raise ava.Rejected(ava.Reason.TOO_LARGE,
                       f"{width}x{height} has over {limits.max_pixels} pixels")
  resized = resize(decode_rgb(image.copy()), image_size)
  check_not_blank(resized)
  return resized


def process(data: bytes,
            image_size: int = DEFAULT_IMAGE_SIZE,
            limits: ImageLimits = ImageLimits()) -> ProcessedImage:
  """Validates, decodes and resizes one image file's bytes into a stored JPEG."""
  decoded = decode(data, image_size, limits)
  return ProcessedImage(
      encoded=encode_jpeg(decoded.image),
      height=image_size,
      width=image_size,
      original_height=decoded.original_height,
      original_width=decoded.original_width,
      original_bytes=len(data),
      original_format=decoded.original_format,
  )
