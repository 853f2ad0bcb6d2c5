"""Per-image validation, conversion and resizing."""

import io

import numpy as np
from PIL import Image
import pytest

from nima_tf import ava
from nima_tf import imaging
from tests import jpeg_faults


def _encode(image, fmt="JPEG", **params):
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **params)
  return buffer.getvalue()


def _halves(mode="RGB", size=(300, 200), left=(255, 0, 0), right=(0, 0, 255)):
  """An image whose left half is `left` and right half is `right`."""
  image = Image.new("RGB", size, right)
  image.paste(left, (0, 0, size[0] // 2, size[1]))
  return image.convert(mode) if mode != "RGB" else image


def _decoded(processed):
  return np.asarray(Image.open(io.BytesIO(processed.encoded)))


def _reason(data, **limits):
  with pytest.raises(ava.Rejected) as raised:
    imaging.process(data, 64, imaging.ImageLimits(**limits))
  return raised.value.reason


def test_process_resizes_to_a_square_jpeg_and_keeps_original_facts():
  data = _encode(_halves(size=(300, 200)))
  processed = imaging.process(data, image_size=64)
  assert (processed.height, processed.width) == (64, 64)
  assert (processed.original_height, processed.original_width) == (200, 300)
  assert processed.original_bytes == len(data)
  assert processed.original_format == "jpeg"
  pixels = _decoded(processed)
  assert pixels.shape == (64, 64, 3)
  assert pixels[32, 5, 0] > 200 and pixels[32, 58, 2] > 200  # red left, blue right


def test_empty_file_is_rejected():
  assert _reason(b"") is ava.Reason.EMPTY_FILE


def test_text_file_is_undecodable():
  assert _reason(b"this is not an image\n") is ava.Reason.UNDECODABLE


def test_truncated_jpeg_is_undecodable_although_its_header_reads():
  data = _encode(Image.fromarray(
      np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)))
  assert _reason(data[:len(data) // 2]) is ava.Reason.UNDECODABLE


def test_short_side_under_min_side_is_too_small():
  assert _reason(_encode(_halves(size=(300, 20))), min_side=32) is ava.Reason.TOO_SMALL


def test_image_over_max_pixels_is_too_large():
  assert _reason(_encode(_halves(size=(300, 200))), max_pixels=50_000) is ava.Reason.TOO_LARGE


def test_decompression_bomb_is_refused_from_its_header():
  bomb = _encode(Image.new("1", (9000, 9000)), "PNG")  # 81 Mpx in a few KB.
  assert len(bomb) < 100_000
  with pytest.raises(ava.Rejected) as raised:
    imaging.open_image(bomb)
  assert raised.value.reason is ava.Reason.TOO_LARGE


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "I;16"])
def test_other_modes_become_rgb(mode):
  source = _halves(mode="L" if mode == "I;16" else mode)
  if mode == "I;16":
    source = Image.fromarray((np.asarray(source, dtype=np.uint16) * 256))
  fmt = "PNG" if mode in ("P", "I;16") else "JPEG"
  pixels = _decoded(imaging.process(_encode(source, fmt), image_size=64))
  assert pixels.shape == (64, 64, 3)
  # The left half stays distinct from the right half whatever the conversion.
  assert np.abs(pixels[32, 5].astype(int) - pixels[32, 58].astype(int)).sum() > 40


def test_transparent_areas_become_white():
  image = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
  image.paste((0, 255, 0, 255), (0, 0, 50, 100))
  pixels = _decoded(imaging.process(_encode(image, "PNG"), image_size=64))
  assert pixels[32, 58].min() > 240  # transparent -> white
  assert pixels[32, 5, 1] > 200 and pixels[32, 5, 0] < 40  # opaque green kept


def test_png_with_a_jpg_name_is_accepted():
  processed = imaging.process(_encode(_halves(), "PNG"), image_size=64)
  assert processed.original_format == "png"


def test_exif_orientation_is_applied():
  exif = Image.Exif()
  exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn.
  data = _encode(_halves(size=(300, 200)), exif=exif.tobytes())
  processed = imaging.process(data, image_size=64)
  assert (processed.original_width, processed.original_height) == (200, 300)
  pixels = _decoded(processed)
  # The stored left (red) half is the top half once upright.
  assert pixels[5, 32, 0] > 200 and pixels[58, 32, 2] > 200


def _stripes(size=(1024, 768), period=8):
  """Black and white vertical stripes: detail that survives the resize to 256 px only if the
  JPEG was decoded at a large enough reduction (a period of 2 stored pixels)."""
  columns = (np.arange(size[0]) // (period // 2)) % 2 * 255
  return Image.fromarray(np.tile(columns.astype(np.uint8), (size[1], 1))).convert("RGB")


def test_draft_decoding_matches_full_decoding_of_a_detailed_image():
  data = _encode(_stripes(), quality=95)
  full = imaging.resize(imaging.decode_rgb(imaging.open_image(data)), 256)
  drafted = imaging.resize(imaging.decode_jpeg(data, imaging.open_image(data), 256), 256)
  difference = np.abs(np.asarray(full, np.float32) - np.asarray(drafted, np.float32))
  assert difference.mean() < 12.0


@pytest.mark.parametrize("size,decoded_size", [((1600, 1200), (400, 300)),
                                               ((1024, 768), (512, 384)),
                                               ((4096, 2048), (512, 256)),
                                               ((511, 300), (511, 300))])
def test_draft_decoding_keeps_every_side_at_least_the_stored_size(size, decoded_size):
  data = _encode(_stripes(size))
  assert imaging.decode_jpeg(data, imaging.open_image(data), 256).size == decoded_size


# The fault corpus: JPEGs that Pillow and tf.io.decode_jpeg decode without an error (they fill
# what is missing with flat colour), and valid JPEGs of every structure that must still pass.

@pytest.mark.parametrize("name", sorted(jpeg_faults.CORRUPT_JPEGS))
def test_jpeg_that_libjpeg_only_warns_about_is_undecodable(name):
  data = jpeg_faults.CORRUPT_JPEGS[name]
  Image.open(io.BytesIO(data)).load()  # Pillow alone takes it.
  with pytest.raises(ava.Rejected) as raised:
    imaging.process(data, 64)
  assert raised.value.reason is ava.Reason.UNDECODABLE
  assert "libjpeg" in raised.value.detail


@pytest.mark.parametrize("name", sorted(jpeg_faults.valid_jpegs()))
def test_valid_jpeg_of_any_structure_is_accepted(name):
  processed = imaging.process(jpeg_faults.valid_jpegs()[name], 64)
  assert (processed.original_width, processed.original_height) == (320, 240)
  assert np.asarray(Image.open(io.BytesIO(processed.encoded))).std() > 10


@pytest.mark.parametrize("mode,draft_size", [("RGB", 0), ("RGB", 64), ("RGB", 100), ("L", 64)])
def test_strict_jpeg_decoding_gives_pillows_pixels(mode, draft_size):
  data = _encode(jpeg_faults.photo((640, 480)).convert(mode))
  by_pillow = imaging.decode_rgb(imaging.open_image(data), draft_size)
  strict = imaging.decode_jpeg(data, imaging.open_image(data), draft_size)
  np.testing.assert_array_equal(np.asarray(strict), np.asarray(by_pillow))


def test_strict_jpeg_decoding_applies_the_exif_orientation():
  exif = Image.Exif()
  exif[0x0112] = 6
  data = _encode(_halves(size=(300, 200)), exif=exif.tobytes())
  upright = imaging.decode_jpeg(data, imaging.open_image(data))
  assert upright.size == (200, 300)
  pixels = np.asarray(upright)
  assert pixels[5, 100, 0] > 200 and pixels[295, 100, 2] > 200  # red on top, blue below


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_image_without_a_picture_is_blank(fmt):
  flat = Image.new("RGB", (300, 200), (128, 128, 128))
  flat.paste((130, 129, 127), (0, 0, 150, 200))  # 2 grey levels apart: still no picture
  assert _reason(_encode(flat, fmt)) is ava.Reason.BLANK_IMAGE


def test_faint_picture_is_not_blank():
  faint = Image.new("L", (300, 200), 120)
  faint.paste(132, (100, 50, 200, 150))  # a faint square: 12 grey levels
  assert imaging.process(_encode(faint.convert("RGB")), 64).height == 64
