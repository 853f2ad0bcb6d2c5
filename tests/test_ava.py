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


def _with_column(column, value):
  fields = GOOD_LINE.split()
  fields[column - 1] = value
  return " ".join(fields)


@pytest.mark.parametrize("value", ["1_000", "+5", "\uff15", "\u0665", "5\x1c6", "0x1F", "5.0"])
def test_integers_are_parsed_strictly(value):
  # int() takes the first five; a column must be plain ASCII decimal digits.
  with pytest.raises(ava.Rejected) as raised:
    ava.parse_row(_with_column(4, value))
  assert raised.value.reason is ava.Reason.MALFORMED_ROW
  assert "column 4" in raised.value.detail


@pytest.mark.parametrize("column", [2, 3, 15])
def test_value_beyond_int64_is_malformed(column):
  with pytest.raises(ava.Rejected) as raised:
    ava.parse_row(_with_column(column, str(2**63)))
  assert raised.value.reason is ava.Reason.MALFORMED_ROW
  assert "int64" in raised.value.detail


def test_largest_int64_id_is_accepted():
  assert ava.parse_row(_with_column(2, str(2**63 - 1))).image_id == 2**63 - 1


def test_thousands_of_digits_are_malformed_not_a_crash():
  assert _reason(_with_column(2, "9" * 5000)) is ava.Reason.MALFORMED_ROW


def test_more_votes_than_any_photo_gets_is_malformed():
  counts = " ".join([str(ava.MAX_VOTES // 5)] * 10)
  assert _reason(f"1 953619 {counts} 1 22 1396") is ava.Reason.MALFORMED_ROW


def test_guess_image_id_ignores_an_id_beyond_int64():
  assert ava.guess_image_id(_with_column(2, str(2**63))) is None


@pytest.mark.parametrize("line", ["+12", "1_2", "\uff11\uff12", "12 13"])
def test_id_list_ids_are_parsed_strictly_and_the_line_is_named(line):
  with pytest.raises(ValueError, match=r"^generic_test.jpgl, line 2: not an image id"):
    ava.parse_id_list(["7\n", line + "\n"], source="generic_test.jpgl")


def test_check_text_lines_counts_rows_and_accepts_crlf():
  assert ava.check_text_lines("AVA.txt", [b"1 2\r\n", b"\r\n", b"3 4\n"]) == 2


@pytest.mark.parametrize("lines,expected", [
    ([b"1 2\r3 4\r"], "AVA.txt, line 1: lines end with a bare carriage return"),
    ([b"\xef\xbb\xbf1 2\n"], "AVA.txt, line 1: starts with a UTF-8 byte-order mark"),
    ([b"\xff\xfe1\x00\n"], "AVA.txt, line 1: starts with a UTF-16 byte-order mark"),
    ([b"1 2\n", b"3 \xe9\n"], "AVA.txt, line 2: not UTF-8 text"),
])
def test_text_that_is_not_plain_is_an_error_naming_file_and_line(lines, expected):
  with pytest.raises(ValueError) as raised:
    ava.check_text_lines("AVA.txt", lines)
  assert str(raised.value).startswith(expected)
