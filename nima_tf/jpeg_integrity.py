"""Whether a JPEG's entropy-coded data ends early, decided in the graph.

When a scan meets a marker before it has the data for its last block (a
download cut short and padded with the end-of-image marker, a header that
claims more blocks than the data holds, zeroed bytes that desynchronize the
Huffman decoder), libjpeg warns "premature end of data segment", fills the
missing blocks with zeros and returns the image. The data job and `predict`
decode strictly (`imaging.decode_jpeg`); no TensorFlow op exposes the
warning, so the serving graph decides it with a second decode.

The probe: the same bytes with filler bytes inserted before every marker that
ends entropy-coded data (the end of each scan, each restart marker). A
segment that holds all its data never reads its filler (libjpeg skips it as
extraneous bytes), so the pixels are the same; a segment that runs out reads
the filler instead of zeros, and the pixels differ. The probe is decoded at
the scale the model's pixels were decoded at, so it rejects exactly the
files whose missing data changes those pixels.

libjpeg prints a line for the filler it skips, so only suspect files are
probed: a scan script that leaves some coefficient of some component
unfinished (a progressive file cut before its last scan), or a bottom-right
pixel of the zero-fill's exact grey (128, or 63/64 for CMYK), which every
sequential file cut before its last block has.
"""

import hashlib
from typing import Callable, NamedTuple

import tensorflow as tf

_FILL_BYTE = 0xFF
_SOI, _EOI, _SOS, _TEM = 0xD8, 0xD9, 0xDA, 0x01
_RST0, _RST7 = 0xD0, 0xD7
_SOF_MARKERS = tuple(sorted(set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}))
_COEFFICIENTS = 64
_MAX_SCAN_COMPONENTS = 4
_MAX_SEGMENTS = 512  # Bounds the walk on hostile input; real files have tens.
# Zero-filled blocks decode to these RGB levels: YCbCr and grayscale, then
# CMYK without and with an Adobe marker.
ZERO_FILL_LEVELS = (128, 63, 64)
# Filler: bytes that are not 0xFF (which would start a marker), enough bits for a
# decoder that ran out to decode blocks from them instead of zeros.
FILLER = bytes(min(b, 0xFE) for b in hashlib.sha256(b"nima_tf filler").digest())
# More segment ends than this (restart markers every few blocks of a large photo,
# or hostile input) are probed at the scans' ends only, so that the probe's
# bytes stay within the file's size plus 128 KiB.
_MAX_PROBED_ENDS = 4096


class Layout(NamedTuple):
  """What the marker walk found.

  `segment_ends`: offsets (sorted int32) where entropy-coded data ends, at the
  first byte of the marker (or of the fill bytes before it) that ends it: the
  end of each scan and each restart interval. `scan_ends`: those of the scans.
  `complete`: every coefficient of every component is finished (successive
  approximation bit 0) by some scan, and the walk reached the end marker.
  """

  segment_ends: tf.Tensor
  scan_ends: tf.Tensor
  complete: tf.Tensor


def _at(values, index):
  """values[index], clamped to the last element (each vector ends with a sentinel)."""
  return tf.gather(values, tf.minimum(index, tf.size(values) - 1))


def layout(encoded) -> Layout:
  """Walks a JPEG's markers, in the graph: where its entropy-coded segments end.

  Every marker's successor (after its segment, or after its scan's data) is
  found at once, vectorized; the walk from the start marker then only follows
  those links, so it costs a few operations per segment.
  """
  data = tf.cast(tf.io.decode_raw(encoded, tf.uint8), tf.int32)
  size = tf.size(data)
  padded = tf.concat([data, [0]], 0)  # Reads past the end give this 0.
  is_ff = tf.equal(data, _FILL_BYTE)
  after_ff = tf.concat([[False], is_ff[:-1]], 0)
  # A marker: a byte other than 0x00 (a stuffed 0xFF) and 0xFF (fill) after 0xFF.
  code_at = tf.cast(tf.where(after_ff & ~is_ff & tf.not_equal(data, 0))[:, 0], tf.int32)
  codes = tf.gather(data, code_at)
  # The marker's first byte: the start of the run of 0xFF bytes before its code.
  ff_runs = tf.cast(tf.where(is_ff & ~after_ff)[:, 0], tf.int32)
  run_start = tf.gather(ff_runs, tf.searchsorted(ff_runs, code_at, side="left") - 1)
  is_restart = (codes >= _RST0) & (codes <= _RST7)
  num_codes = tf.size(code_at)
  num_enders = num_codes - tf.reduce_sum(tf.cast(is_restart, tf.int32))
  # Each vector ends with a sentinel, so that a search past the last marker reads it.
  ender_at = tf.concat([tf.boolean_mask(code_at, ~is_restart), [size]], 0)
  ender_start = tf.concat([tf.boolean_mask(run_start, ~is_restart), [size]], 0)
  code_at = tf.concat([code_at, [size]], 0)
  codes = tf.concat([codes, [0]], 0)
  run_start = tf.concat([run_start, [size]], 0)

  # Each marker's segment, and where the walk goes from it.
  length = _at(padded, code_at + 1) * 256 + _at(padded, code_at + 2)
  segment_end = code_at + 1 + length
  is_scan = tf.equal(codes, _SOS)
  is_end = tf.equal(codes, _EOI)
  standalone = ((codes >= _RST0) & (codes <= _RST7)) | tf.equal(codes, _TEM)
  ender = tf.searchsorted(ender_at, segment_end, side="left")
  data_end = _at(ender_start, ender)
  next_position = tf.where(standalone, code_at + 1, tf.where(is_scan, data_end, segment_end))
  next_code = tf.searchsorted(code_at, next_position, side="left")
  step_ok = (~tf.equal(codes, _SOI) & (standalone | is_end | (length >= 2))
             & (next_position > code_at) & (next_position <= size)
             & (~is_scan | (ender < num_enders))
             & (next_code < num_codes) & tf.equal(_at(run_start, next_code), next_position))

  first = tf.searchsorted(code_at, [2], side="left")[0]
  starts_well = (first < num_codes) & tf.equal(run_start[first], 2)

  def step(count, marker, path):
    path = path.write(count, marker)
    return count + 1, tf.where(is_end[marker] | ~step_ok[marker], num_codes, next_code[marker]), path

  _, _, path = tf.while_loop(
      lambda count, marker, path: marker < num_codes, step,
      (0, tf.where(starts_well, first, num_codes),
       tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[])),
      maximum_iterations=_MAX_SEGMENTS)
  path = path.stack()
  reached_end = tf.reduce_any(tf.gather(is_end, path))

  # Frame: its components' ids, in slots.
  frames = tf.boolean_mask(path, tf.reduce_any(
      tf.equal(tf.gather(codes, path)[:, tf.newaxis], _SOF_MARKERS), axis=1))
  frame_at = _at(code_at, tf.concat([frames, [num_codes]], 0)[0])
  slots = tf.range(_MAX_SCAN_COMPONENTS)
  components = tf.where(slots < _at(padded, frame_at + 8),
                        _at(padded, frame_at + 9 + 3 * slots), -1)
  components = tf.where(tf.size(frames) > 0, components, -1)

  # Scans: which coefficients of which components each finishes.
  scans = tf.boolean_mask(path, tf.gather(is_scan, path))
  scan_at = tf.gather(code_at, scans)[:, tf.newaxis]  # (S, 1)
  count = _at(padded, scan_at + 3)
  selectors = tf.where(slots < count, _at(padded, scan_at + 4 + 2 * slots), -1)  # (S, 4)
  band_start = _at(padded, scan_at + 4 + 2 * count)
  band_end = _at(padded, scan_at + 5 + 2 * count)
  final_bit = tf.equal(_at(padded, scan_at + 6 + 2 * count) % 16, 0)  # (S, 1)
  in_scan = tf.reduce_any(tf.equal(selectors[:, :, tf.newaxis], components)
                          & (selectors[:, :, tf.newaxis] >= 0), axis=1)  # (S, slot)
  coefficient = tf.range(_COEFFICIENTS)
  in_band = (coefficient >= band_start) & (coefficient <= band_end) & final_bit  # (S, 64)
  finished = tf.reduce_any(in_scan[:, :, tf.newaxis] & in_band[:, tf.newaxis, :], axis=0)
  complete = (reached_end & tf.reduce_any(components >= 0)
              & tf.reduce_all(tf.reduce_all(finished, axis=1) | (components < 0)))

  starts = run_start[tf.newaxis, :-1]
  inside = tf.reduce_any((starts >= tf.gather(segment_end, scans)[:, tf.newaxis])
                         & (starts <= tf.gather(data_end, scans)[:, tf.newaxis]), axis=0)
  return Layout(segment_ends=tf.boolean_mask(run_start[:-1], inside),
                scan_ends=tf.gather(data_end, scans), complete=complete)


def with_filler(encoded, offsets):
  """The bytes with `FILLER` inserted before each of the sorted `offsets`."""
  bounds = tf.concat([[0], offsets, [tf.strings.length(encoded)]], 0)
  pieces = tf.strings.substr(tf.fill(tf.shape(bounds[:-1]), encoded), bounds[:-1],
                             bounds[1:] - bounds[:-1])
  return tf.strings.reduce_join(pieces, separator=FILLER)


def looks_zero_filled(decoded):
  """Whether the bottom-right pixel is the exact grey of a zero-filled block."""
  corner = decoded[-1, -1]
  grey = tf.reduce_all(tf.equal(corner, corner[0]))
  return grey & tf.reduce_any(tf.equal(tf.cast(corner[0], tf.int32), ZERO_FILL_LEVELS))


def ends_early(encoded, decoded, decode: Callable[[tf.Tensor], tf.Tensor]):
  """Whether a JPEG's data runs out before its last block changes `decoded`.

  `decoded` is `decode(encoded)`: pixels of a decode that fills missing data
  with zeros. Suspect files are decoded again with `FILLER` before each
  segment's end; the answer is whether any pixel differs.
  """
  structure = layout(encoded)

  def probe():
    ends = tf.cond(tf.size(structure.segment_ends) > _MAX_PROBED_ENDS,
                   lambda: structure.scan_ends, lambda: structure.segment_ends)
    return tf.reduce_any(tf.not_equal(decode(with_filler(encoded, ends)), decoded))

  suspect = ~structure.complete | looks_zero_filled(decoded)
  return tf.cond(suspect & (tf.size(structure.segment_ends) > 0), probe,
                 lambda: tf.constant(False))
