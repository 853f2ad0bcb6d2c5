"""A corpus of JPEGs that libjpeg only warns about, and of valid JPEGs of every structure.

The broken ones are what a broken download or a lying header looks like: Pillow
and `tf.io.decode_jpeg` return an image for each (grey where data is missing).
"""

import io

import numpy as np
from PIL import Image

EOI = b"\xff\xd9"


def encode(image: Image.Image, fmt: str = "JPEG", **params) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **params)
  return buffer.getvalue()


def photo(size=(320, 240), seed=0) -> Image.Image:
  """A smooth random picture: what a photo's JPEG looks like to the decoder."""
  small = np.random.default_rng(seed).integers(0, 255, (size[1] // 16 + 1, size[0] // 16 + 1, 3),
                                               dtype=np.uint8)
  return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def scan_start(jpeg: bytes) -> int:
  """Offset of the first byte of entropy-coded data (after the first SOS segment)."""
  sos = jpeg.index(b"\xff\xda")
  return sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big")


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def frame_header(jpeg: bytes) -> int:
  """Offset of the frame header (SOFn) marker, found by walking the segments."""
  position = 2
  while jpeg[position + 1] not in _SOF_MARKERS:
    position += 2 + int.from_bytes(jpeg[position + 2:position + 4], "big")
  return position


def size_of(jpeg: bytes):
  """(width, height) that the frame header claims."""
  sof = frame_header(jpeg)
  return (int.from_bytes(jpeg[sof + 7:sof + 9], "big"),
          int.from_bytes(jpeg[sof + 5:sof + 7], "big"))


def claiming_size(jpeg: bytes, width: int, height: int) -> bytes:
  """The JPEG with its frame header claiming another size."""
  sof = frame_header(jpeg)
  return (jpeg[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big")
          + jpeg[sof + 9:])


def cut(jpeg: bytes, length: int) -> bytes:
  """The first `length` bytes, padded with the end-of-image marker: a broken download."""
  return jpeg[:length] + EOI


def restart_marker_after(jpeg: bytes, offset: int) -> int:
  """Offset of the first restart marker (0xFF 0xD0-0xD7) at or after `offset`."""
  return next(i for i in range(offset, len(jpeg) - 1)
              if jpeg[i] == 0xFF and 0xD0 <= jpeg[i + 1] <= 0xD7)


BASELINE = encode(photo())
PROGRESSIVE = encode(photo(), progressive=True)
RESTARTS = encode(photo(), restart_marker_blocks=4)
CORRUPT_JPEGS = {
    "truncated_and_padded_with_eoi": cut(BASELINE, len(BASELINE) // 2),
    "truncated_late_and_padded_with_eoi": cut(BASELINE, len(BASELINE) * 9 // 10),
    "progressive_truncated_and_padded": cut(PROGRESSIVE, len(PROGRESSIVE) // 2),
    "header_without_scan_data": cut(BASELINE, scan_start(BASELINE)),
    "scan_with_zeroed_bytes": (BASELINE[:scan_start(BASELINE) + 200] + bytes(400)
                               + BASELINE[scan_start(BASELINE) + 600:]),
    "small_jpeg_claiming_a_large_size": claiming_size(BASELINE, 2000, 1500),
    # Whole restart intervals missing: libjpeg finds the end marker instead of RSTn.
    "cut_at_a_restart_marker": cut(RESTARTS, restart_marker_after(RESTARTS, len(RESTARTS) // 2)),
    "restart_intervals_claiming_a_large_size": claiming_size(RESTARTS, 640, 480),
}


def valid_jpegs() -> dict:
  exif = Image.Exif()
  exif[0x0112] = 3  # upside down
  return {
      "progressive": PROGRESSIVE,
      "restart_markers": RESTARTS,
      "progressive_with_restart_markers": encode(photo(), progressive=True,
                                                 restart_marker_blocks=3),
      "exif": encode(photo(), exif=exif.tobytes()),
      "trailing_bytes_after_eoi": BASELINE + b"\0" * 100 + b"trailing data" * 20,
      "grayscale": encode(photo().convert("L")),
      "cmyk": encode(photo().convert("CMYK")),
      "no_chroma_subsampling": encode(photo(), subsampling=0, quality=100),
  }
