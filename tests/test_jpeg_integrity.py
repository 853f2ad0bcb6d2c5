"""The serving graph's check that a JPEG's data does not end before its last block."""

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from nima_tf import jpeg_integrity
from nima_tf import scoring
from tests import jpeg_faults

# Draft sizes that decode the corpus's 320 x 240 photos at 1/1, 1/2, 1/4 and 1/8.
DRAFT_SIZES = (240, 120, 60, 30)


def _decoder(draft_size):
  return lambda encoded: scoring.decode_jpeg_draft(encoded, draft_size)


def _ends_early(data: bytes, draft_size: int) -> bool:
  decode = _decoder(draft_size)
  encoded = tf.constant(data)
  structure = jpeg_integrity.layout(encoded)
  return bool(jpeg_integrity.ends_early(encoded, structure, decode(encoded), decode))


def _probed(data: bytes, draft_size: int) -> bool:
  decoded = scoring.decode_jpeg_draft(tf.constant(data), draft_size)
  return bool(jpeg_integrity.is_suspect(jpeg_integrity.layout(tf.constant(data)), decoded))


@pytest.mark.parametrize("draft_size", DRAFT_SIZES)
@pytest.mark.parametrize("name", sorted(jpeg_faults.CORRUPT_JPEGS))
def test_jpeg_whose_data_runs_out_ends_early_at_every_scale(name, draft_size):
  assert _ends_early(jpeg_faults.CORRUPT_JPEGS[name], draft_size)


@pytest.mark.parametrize("draft_size", DRAFT_SIZES)
@pytest.mark.parametrize("name", sorted(jpeg_faults.valid_jpegs()))
def test_valid_jpeg_does_not_end_early(name, draft_size):
  assert not _ends_early(jpeg_faults.valid_jpegs()[name], draft_size)


@pytest.mark.parametrize("name", sorted(jpeg_faults.valid_jpegs()))
def test_valid_jpeg_is_not_probed(name):
  # A probe makes libjpeg print a line: valid photos must not pay for it.
  assert not _probed(jpeg_faults.valid_jpegs()[name], 60)


def test_valid_photo_with_a_corner_of_the_zero_fill_grey_is_probed_and_passes():
  image = jpeg_faults.photo()
  image.paste((128, 128, 128), (256, 176, 320, 240))  # whole blocks of flat mid grey
  data = jpeg_faults.encode(image)
  assert _probed(data, 60)
  assert not _ends_early(data, 60)


def _ends_of_intervals(jpeg: bytes) -> list:
  """Offsets of the restart markers in the scan, then of the end-of-image marker."""
  start = jpeg_faults.scan_start(jpeg)
  restarts = [i for i in range(start, len(jpeg) - 1)
              if jpeg[i] == 0xFF and 0xD0 <= jpeg[i + 1] <= 0xD7]
  return restarts + [jpeg.rindex(jpeg_faults.EOI)]


@pytest.mark.parametrize("name", ["exif", "restart_markers", "trailing_bytes_after_eoi"])
def test_layout_finds_where_each_entropy_coded_segment_ends(name):
  jpeg = jpeg_faults.valid_jpegs()[name]
  ends = jpeg_integrity.layout(tf.constant(jpeg)).segment_ends.numpy().tolist()
  assert ends == _ends_of_intervals(jpeg)
  intervals = (320 // 16) * (240 // 16) // 4  # 4:2:0 blocks of 16 x 16, a restart every 4
  assert len(ends) == (intervals if name == "restart_markers" else 1)


def test_layout_finds_the_end_of_every_progressive_scan():
  jpeg = jpeg_faults.PROGRESSIVE
  ends = jpeg_integrity.layout(tf.constant(jpeg)).segment_ends.numpy()
  assert len(ends) == jpeg.count(b"\xff\xda") == 10
  assert all(jpeg[end] == 0xFF and jpeg[end + 1] in (0xC4, 0xDA, 0xD9) for end in ends)


def test_progressive_jpeg_cut_before_its_last_scan_is_incomplete():
  assert bool(jpeg_integrity.layout(tf.constant(jpeg_faults.PROGRESSIVE)).complete)
  cut = jpeg_faults.cut(jpeg_faults.PROGRESSIVE, len(jpeg_faults.PROGRESSIVE) // 2)
  assert not bool(jpeg_integrity.layout(tf.constant(cut)).complete)


def test_cut_that_leaves_the_decoded_pixels_intact_is_accepted():
  # Cut inside the last scan (the luma's final refinement bit): at 1/8 scale
  # only the DC coefficients are decoded, and those are complete.
  jpeg = jpeg_faults.PROGRESSIVE
  cut = jpeg_faults.cut(jpeg, len(jpeg) - 40)
  assert not _ends_early(cut, 30)
  np.testing.assert_array_equal(scoring.decode_jpeg_draft(tf.constant(cut), 30).numpy(),
                                scoring.decode_jpeg_draft(tf.constant(jpeg), 30).numpy())


def test_filler_is_inserted_before_each_offset():
  filled = jpeg_integrity.with_filler(tf.constant(b"abcdef"), tf.constant([2, 4])).numpy()
  filler = jpeg_integrity.FILLER
  assert filled == b"ab" + filler + b"cd" + filler + b"ef"
  assert b"\xff" not in filler and len(filler) == 32


@pytest.mark.parametrize("data", [
    b"\xff\xd8" + np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes(),
    b"\xff\xd8\xff\xc0\x00\x00" + bytes(100),  # a segment of length 0
    b"\xff\xd8\xff\xe1\xff\xf0" + bytes(100),  # a segment longer than the file
    b"\xff\xd8" + b"\xff\x01" * 5000,  # more markers than the walk takes
    b"\xff\xd8\xff\xdb\x00\x03\xff\x00" + jpeg_faults.BASELINE[2:],  # a segment, then garbage
    jpeg_faults.BASELINE[:-2],  # no end marker
    b"\xff\xd8\xff\xd8" + jpeg_faults.BASELINE[2:],  # a second start marker
], ids=["random_bytes", "zero_length", "length_past_the_end", "endless_markers",
        "byte_after_a_segment", "no_end", "two_starts"])
def test_walk_of_broken_structure_stops_short_of_the_end(data):
  layout = tf.function(jpeg_integrity.layout)  # as in the SavedModel: eager, 4,096 steps are slow
  assert not bool(layout(tf.constant(data)).walked)


@pytest.mark.parametrize("options", [
    {"quality": 15},  # the last quantization entry is 255: the segment ends with 0xFF
    {"comment": b"ends with \xff"}])
def test_walk_follows_a_segment_that_ends_with_0xff(options):
  jpeg = jpeg_faults.encode(jpeg_faults.photo(), **options)
  assert bool(jpeg_integrity.layout(tf.constant(jpeg)).walked)
  assert not _ends_early(jpeg, 60)
  assert _ends_early(jpeg_faults.cut(jpeg, len(jpeg) // 2), 60)


def test_valid_jpeg_walks_to_its_end_marker():
  for name, jpeg in jpeg_faults.valid_jpegs().items():
    assert bool(jpeg_integrity.layout(tf.constant(jpeg)).walked), name


def test_arithmetic_coded_jpeg_is_never_probed():
  # Its encoder may drop trailing zero bytes: filler would change a valid file.
  frame = jpeg_faults.BASELINE.index(b"\xff\xc0")
  arithmetic = (jpeg_faults.BASELINE[:frame] + b"\xff\xc9"
                + jpeg_faults.BASELINE[frame + 2:])
  structure = jpeg_integrity.layout(tf.constant(arithmetic))
  assert bool(structure.arithmetic)
  assert not bool(jpeg_integrity.is_suspect(structure, tf.fill([4, 4, 3], tf.constant(128, tf.uint8))))


def test_sequential_jpeg_in_several_scans_is_probed():
  # Its last scan may hold one component only: a cut leaves no grey corner.
  structure = jpeg_integrity.layout(tf.constant(jpeg_faults.BASELINE))._replace(
      several_scans=tf.constant(True))
  assert bool(jpeg_integrity.is_suspect(structure, tf.fill([4, 4, 3], tf.constant(9, tf.uint8))))


def test_grey_of_a_zero_filled_block_is_recognized_and_other_greys_are_not():
  def corner(level):
    return tf.constant(np.full((4, 4, 3), level, np.uint8))
  assert [bool(jpeg_integrity.looks_zero_filled(corner(level))) for level in (128, 63, 64)] == [
      True] * 3
  assert not bool(jpeg_integrity.looks_zero_filled(corner(127)))
  assert not bool(jpeg_integrity.looks_zero_filled(
      tf.constant(np.array([[[128, 128, 129]]], np.uint8))))


def test_jpeg_with_more_segments_than_probed_is_probed_at_its_scan_end():
  jpeg = jpeg_faults.encode(jpeg_faults.photo((1040, 1040)), restart_marker_blocks=1)
  structure = jpeg_integrity.layout(tf.constant(jpeg))
  assert structure.segment_ends.shape[0] == 65 * 65 > 4096  # one interval per 16 x 16 block
  assert structure.scan_ends.numpy().tolist() == [jpeg.rindex(jpeg_faults.EOI)]
  assert _ends_early(jpeg_faults.cut(jpeg, len(jpeg) // 2), 260)
  assert not _ends_early(jpeg, 260)


@pytest.mark.parametrize("options", [
    {"restart_marker_blocks": 4}, {"restart_marker_rows": 1, "subsampling": 1},
    {"progressive": True, "restart_marker_blocks": 3, "subsampling": 0}])
def test_scan_with_fewer_restart_markers_than_its_blocks_need_is_missing_restarts(options):
  jpeg = jpeg_faults.encode(jpeg_faults.photo((333, 251)), **options)
  assert not bool(jpeg_integrity.layout(tf.constant(jpeg)).restarts_missing)
  cut = jpeg_faults.cut(jpeg, jpeg_faults.restart_marker_after(jpeg, len(jpeg) // 3))
  assert bool(jpeg_integrity.layout(tf.constant(cut)).restarts_missing)
