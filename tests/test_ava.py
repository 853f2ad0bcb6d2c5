"""Parsing and validation of AVA.txt rows and id lists."""

import pytest

from nima_tf import ava

GOOD_LINE = "1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396"


def _reason(line):
  with pytest.raises(ava.Rejected) as raised:
    ava.parse_row(line)
  return raised.value.reason


def test_parse_row_reads_every_column():
  row = ava.parse_row(GOOD_LINE)
  assert row == ava.Row(index=1, image_id=953619, counts=(0, 1, 5, 17, 38, 36, 15, 6, 5, 1),
                        tags=(1, 22), challenge=1396)
  assert row.num_votes == 124


def test_parse_row_accepts_any_whitespace():
  assert ava.parse_row("  " + GOOD_LINE.replace(" ", "\t") + "\r\n").image_id == 953619


def test_format_row_is_the_inverse_of_parse_row():
  assert ava.format_row(ava.parse_row(GOOD_LINE)) == GOOD_LINE


@pytest.mark.parametrize("line", [
    "1 953619 0 1 5 17 38 36 15 6 5 1 1 22",
    GOOD_LINE + " 7",
    "",
])
def test_wrong_number_of_columns_is_malformed(line):
  assert _reason(line) is ava.Reason.MALFORMED_ROW


def test_non_integer_column_is_malformed():
  assert _reason(GOOD_LINE.replace(" 38 ", " 3.8 ")) is ava.Reason.MALFORMED_ROW


def test_negative_count_is_malformed():
  assert _reason(GOOD_LINE.replace(" 38 ", " -38 ")) is ava.Reason.MALFORMED_ROW


def test_row_without_votes_is_rejected():
  assert _reason("1 953619 0 0 0 0 0 0 0 0 0 0 1 22 1396") is ava.Reason.NO_VOTES


def test_guess_image_id_reads_the_second_column_when_it_is_a_number():
  assert ava.guess_image_id("1 953619 garbage") == 953619
  assert ava.guess_image_id("1 x9 0") is None
  assert ava.guess_image_id("1") is None


def test_rejection_serializes_to_json_with_the_reason_string():
  rejection = ava.Rejection(12, ava.Reason.TOO_SMALL, "10x10")
  assert rejection.to_json() == '{"image_id": 12, "reason": "too_small", "detail": "10x10"}'


def test_parse_id_list_skips_blank_lines():
  assert ava.parse_id_list(["12\n", "\n", " 7 \n"]) == [12, 7]


def test_parse_id_list_rejects_a_non_integer_line():
  with pytest.raises(ValueError, match="not an image id"):
    ava.parse_id_list(["12", "abc"])


def test_image_path_is_id_dot_jpg():
  assert ava.image_path("gs://bucket/images", 42) == "gs://bucket/images/42.jpg"
