"""Whether a JPEG's entropy-coded data ends early, decided in the graph.

When a scan meets a marker before it has the data for its last block (a
download cut short and padded with the end-of-image marker, a header that
claims more blocks than the data holds, zeroed bytes that desynchronize the
Huffman decoder), libjpeg warns "premature end of data segment", fills the
missing blocks with zeros and returns the image. The data job and `predict`
decode strictly (`imaging.decode_jpeg`); no TensorFlow op exposes the
warning, so the serving graph decides it from the file's structure and, for
suspect files, a second decode.

The structure (`layout`): a walk of the marker segments from the start
marker. A file whose markers do not lead to the end-of-image marker is
broken (libjpeg would skip bytes, or run out of data). Data that stops
exactly at a restart marker leaves no segment short (libjpeg finds another
marker where the next restart marker should be, and fills the remaining
intervals with zeros): each scan's restart markers are counted against what
its blocks and restart interval need.

The probe (`ends_early`): the same bytes with filler bytes inserted before
every marker that ends entropy-coded data (the end of each scan, each restart
marker). A segment that holds all its data never reads its filler (libjpeg
skips it as extraneous bytes), so the pixels are the same; a segment that
runs out reads the filler instead of zeros, and the pixels differ. The probe
is decoded at the scale the model's pixels were decoded at, so it rejects
exactly the files whose missing data changes those pixels. libjpeg prints a
line for the filler it skips, so only suspect files are probed: a scan script
that leaves some coefficient of some component unfinished (a progressive file
cut before its last scan), a sequential file in several scans, or a
bottom-right pixel of the zero-fill's exact grey (128, or 63/64 for CMYK),
which every interleaved sequential file cut before its last block has.
Arithmetic-coded files are never probed: their encoder may drop trailing zero
bytes, which the decoder supplies at the marker, so filler changes valid ones.
"""

import hashlib
from typing import Callable, NamedTuple

import tensorflow as tf

_FILL_BYTE = 0xFF
_SOI, _EOI, _SOS, _DRI, _TEM = 0xD8, 0xD9, 0xDA, 0xDD, 0x01
_RST0, _RST7 = 0xD0, 0xD7
_SOF_MARKERS = tuple(sorted(set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}))
_PROGRESSIVE_MARKERS = (0xC2, 0xC6, 0xCA, 0xCE)
_ARITHMETIC_MARKERS = (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
_COEFFICIENTS = 64
_MAX_SCAN_COMPONENTS = 4
_MAX_SEGMENTS = 4096  # Bounds the walk on hostile input; real files have tens.
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

  `walked`: the markers lead from the start marker to the end-of-image marker.
  `segment_ends`: offsets (sorted int32) where entropy-coded data ends, at the
  first byte of the marker (or of the fill bytes before it) that ends it: the
  end of each scan and each restart interval. `scan_ends`: those of the scans.
  `complete`: every coefficient of every component is finished (successive
  approximation bit 0) by some scan. `restarts_missing`: some scan has fewer
  restart markers than its blocks and restart interval need. `several_scans`:
  a sequential frame coded in more than one scan. `arithmetic`: arithmetic
  coding (not Huffman).
  """

  walked: tf.Tensor
  segment_ends: tf.Tensor
  scan_ends: tf.Tensor
  complete: tf.Tensor
  restarts_missing: tf.Tensor
  several_scans: tf.Tensor
  arithmetic: tf.Tensor


def _at(values, index):
  """values[index], clamped to the last element (each vector ends with a sentinel)."""
  return tf.gather(values, tf.minimum(index, tf.size(values) - 1))


def _big_endian(padded, offset):
  return _at(padded, offset) * 256 + _at(padded, offset + 1)


def _ceil_div(numerator, denominator):
  denominator = tf.maximum(denominator, 1)  # A broken header may give 0.
  return (numerator + denominator - 1) // denominator


def _is_any(codes, markers):
  return tf.reduce_any(tf.equal(codes[..., tf.newaxis], markers), axis=-1)


class _Markers(NamedTuple):
  """Every marker of the file, vectorized, each vector ending with a sentinel."""

  at: tf.Tensor  # offset of the marker's code byte
  codes: tf.Tensor
  run_start: tf.Tensor  # offset of the first 0xFF of the run before the code
  count: tf.Tensor  # markers, without the sentinel
  after_segment: tf.Tensor  # offset after the marker's segment (for SOS: its data)
  data_end: tf.Tensor  # for SOS: where its entropy-coded data ends
  data_ended: tf.Tensor  # for SOS: a marker other than RSTn ends its data


def _markers(data, padded) -> _Markers:
  size = tf.size(data)
  is_ff = tf.equal(data, _FILL_BYTE)
  after_ff = tf.concat([[False], is_ff[:-1]], 0)
  # A marker: a byte other than 0x00 (a stuffed 0xFF) and 0xFF (fill) after 0xFF.
  at = tf.cast(tf.where(after_ff & ~is_ff & tf.not_equal(data, 0))[:, 0], tf.int32)
  codes = tf.gather(data, at)
  ff_runs = tf.cast(tf.where(is_ff & ~after_ff)[:, 0], tf.int32)
  run_start = tf.gather(ff_runs, tf.searchsorted(ff_runs, at, side="left") - 1)
  is_restart = (codes >= _RST0) & (codes <= _RST7)
  # Scan data ends at the first marker other than a restart marker.
  ender_at = tf.boolean_mask(at, ~is_restart)
  ender_start = tf.concat([tf.boolean_mask(run_start, ~is_restart), [size]], 0)
  after_segment = at + 1 + _big_endian(padded, at + 1)
  ender = tf.searchsorted(ender_at, after_segment, side="left")
  return _Markers(at=tf.concat([at, [size]], 0), codes=tf.concat([codes, [0]], 0),
                  run_start=tf.concat([run_start, [size]], 0), count=tf.size(at),
                  after_segment=tf.concat([after_segment, [size]], 0),
                  data_end=tf.concat([_at(ender_start, ender), [size]], 0),
                  data_ended=tf.concat([ender < tf.size(ender_at), [False]], 0))


def _walk(markers: _Markers, size):
  """Indices of the markers met walking from the start marker, in order.

  Each marker's successor is computed for all markers at once; the loop only
  follows the links, and stops at the end marker or at a broken link.
  """
  codes = markers.codes
  is_scan = tf.equal(codes, _SOS)
  is_end = tf.equal(codes, _EOI)
  standalone = ((codes >= _RST0) & (codes <= _RST7)) | tf.equal(codes, _TEM)
  next_position = tf.where(standalone, markers.at + 1,
                           tf.where(is_scan, markers.data_end, markers.after_segment))
  next_marker = tf.searchsorted(markers.at, next_position, side="left")
  # The next marker's 0xFF run covers `next_position` (it may begin inside
  # the segment before, whose last byte may be 0xFF).
  step_ok = (~tf.equal(codes, _SOI)
             & (standalone | is_end | (markers.after_segment - markers.at >= 3))
             & (next_position > markers.at) & (next_position <= size)
             & (~is_scan | markers.data_ended) & (next_marker < markers.count)
             & (_at(markers.run_start, next_marker) <= next_position)
             & (_at(markers.at, next_marker) > next_position))
  first = tf.searchsorted(markers.at, [2], side="left")[0]
  starts_well = (first < markers.count) & (markers.run_start[first] <= 2)

  def step(count, marker, path):
    following = tf.where(is_end[marker] | ~step_ok[marker], markers.count, next_marker[marker])
    return count + 1, following, path.write(count, marker)

  _, _, path = tf.while_loop(
      lambda count, marker, path: marker < markers.count, step,
      (0, tf.where(starts_well, first, markers.count),
       tf.TensorArray(tf.int32, size=0, dynamic_size=True, element_shape=[])),
      maximum_iterations=_MAX_SEGMENTS)
  return path.stack()


def _within(sorted_values, starts, ends):
  """Whether each of `sorted_values` lies in some [starts[i], ends[i]]: O(values + ranges)."""
  low = tf.searchsorted(sorted_values, starts, side="left")
  high = tf.searchsorted(sorted_values, ends, side="right")
  size = tf.size(sorted_values)
  opened = tf.math.unsorted_segment_sum(tf.ones_like(low), low, size + 1)
  closed = tf.math.unsorted_segment_sum(tf.ones_like(high), high, size + 1)
  return tf.cumsum(opened - closed)[:-1] > 0


def layout(encoded) -> Layout:
  """Walks a JPEG's markers, in the graph: where its entropy-coded segments end."""
  data = tf.cast(tf.io.decode_raw(encoded, tf.uint8), tf.int32)
  padded = tf.concat([data, [0]], 0)  # Reads past the end give this 0.
  markers = _markers(data, padded)
  path = _walk(markers, tf.size(data))
  path_codes = tf.gather(markers.codes, path)
  slots = tf.range(_MAX_SCAN_COMPONENTS)

  # The frame: coding, size, and each component's id and sampling factors, in slots.
  frames = tf.boolean_mask(path, _is_any(path_codes, _SOF_MARKERS))
  frame = _at(tf.concat([frames, [markers.count]], 0), 0)
  frame_code, frame_at = markers.codes[frame], markers.at[frame]
  in_frame = (slots < _at(padded, frame_at + 8)) & (tf.size(frames) > 0)
  components = tf.where(in_frame, _at(padded, frame_at + 9 + 3 * slots), -1)
  sampling = _at(padded, frame_at + 10 + 3 * slots)
  horizontal = tf.where(in_frame, sampling // 16, 0)
  vertical = tf.where(in_frame, sampling % 16, 0)
  height = _big_endian(padded, frame_at + 4)
  width = _big_endian(padded, frame_at + 6)

  # Scans: which components, which coefficients each finishes.
  scan_steps = tf.cast(tf.where(tf.equal(path_codes, _SOS))[:, 0], tf.int32)
  scans = tf.gather(path, scan_steps)
  scan_at = tf.gather(markers.at, scans)[:, tf.newaxis]  # (S, 1)
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
  complete = (tf.reduce_any(components >= 0)
              & tf.reduce_all(tf.reduce_all(finished, axis=1) | (components < 0)))

  # Restart intervals: the interval in force at each scan (the last DRI before it).
  is_interval = tf.equal(path_codes, _DRI)
  interval_steps = tf.cast(tf.where(is_interval)[:, 0], tf.int32)
  interval_values = tf.concat([_big_endian(
      padded, tf.gather(markers.at, tf.boolean_mask(path, is_interval)) + 3), [0]], 0)
  last_interval = tf.searchsorted(interval_steps, scan_steps, side="left") - 1
  interval = tf.where(last_interval >= 0,
                      tf.gather(interval_values, tf.maximum(last_interval, 0)), 0)
  # A scan's blocks: MCUs of all components if interleaved, else the one component's blocks.
  h_max, v_max = tf.reduce_max(horizontal), tf.reduce_max(vertical)
  interleaved = _ceil_div(width, 8 * h_max) * _ceil_div(height, 8 * v_max)
  single = tf.cast(in_scan, tf.int32)
  h_single = tf.reduce_sum(single * horizontal, axis=1)
  v_single = tf.reduce_sum(single * vertical, axis=1)
  one_component = (_ceil_div(_ceil_div(width * h_single, h_max), 8)
                   * _ceil_div(_ceil_div(height * v_single, v_max), 8))
  blocks = tf.where(count[:, 0] > 1, interleaved, one_component)
  data_start = tf.gather(markers.after_segment, scans)
  data_end = tf.gather(markers.data_end, scans)
  restart_at = tf.boolean_mask(markers.at[:-1], (markers.codes[:-1] >= _RST0)
                               & (markers.codes[:-1] <= _RST7))
  restarts = (tf.searchsorted(restart_at, data_end, side="left")
              - tf.searchsorted(restart_at, data_start, side="left"))
  restarts_missing = tf.reduce_any((interval > 0) & (height > 0)
                                   & (restarts < _ceil_div(blocks, interval) - 1))

  ends = markers.run_start[:-1]
  return Layout(
      walked=tf.reduce_any(tf.equal(path_codes, _EOI)),
      segment_ends=tf.boolean_mask(ends, _within(ends, data_start, data_end)),
      scan_ends=data_end, complete=complete, restarts_missing=restarts_missing,
      several_scans=~_is_any(frame_code, _PROGRESSIVE_MARKERS) & (tf.size(scans) > 1),
      arithmetic=_is_any(frame_code, _ARITHMETIC_MARKERS))


def with_filler(encoded, offsets):
  """The bytes with `FILLER` inserted before each of the sorted `offsets`."""
  bounds = tf.concat([[0], offsets, [tf.strings.length(encoded)]], 0)
  pieces = tf.strings.substr(encoded, bounds[:-1], bounds[1:] - bounds[:-1])
  return tf.strings.reduce_join(pieces, separator=FILLER)


def looks_zero_filled(decoded):
  """Whether the bottom-right pixel is the exact grey of a zero-filled block."""
  corner = decoded[-1, -1]
  grey = tf.reduce_all(tf.equal(corner, corner[0]))
  return grey & tf.reduce_any(tf.equal(tf.cast(corner[0], tf.int32), ZERO_FILL_LEVELS))


def is_suspect(structure: Layout, decoded):
  """Whether a walked file is probed (see the module docstring)."""
  return (~structure.arithmetic & (tf.size(structure.segment_ends) > 0)
          & (~structure.complete | structure.several_scans | looks_zero_filled(decoded)))


def probe_differs(encoded, structure: Layout, decoded,
                  decode: Callable[[tf.Tensor], tf.Tensor]):
  """Whether decoding with `FILLER` before each segment's end changes `decoded`.

  `structure` is `layout(encoded)`, `decoded` is `decode(encoded)`: pixels of
  a decode that fills missing data with zeros.
  """
  ends = tf.cond(tf.size(structure.segment_ends) > _MAX_PROBED_ENDS,
                 lambda: structure.scan_ends, lambda: structure.segment_ends)
  return tf.reduce_any(tf.not_equal(decode(with_filler(encoded, ends)), decoded))


def ends_early(encoded, structure: Layout, decoded, decode: Callable[[tf.Tensor], tf.Tensor]):
  """Whether a walked JPEG's data runs out before its last block, changing `decoded`.

  Restart intervals missing decide it alone; suspect files are probed
  (`probe_differs`).
  """
  return structure.restarts_missing | tf.cond(
      is_suspect(structure, decoded),
      lambda: probe_differs(encoded, structure, decoded, decode), lambda: tf.constant(False))
