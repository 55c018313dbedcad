import pytest
from minicsv import parse_line, read_records


def test_parse_plain_fields():
    assert parse_line("a,b,c") == ["a", "b", "c"]


def test_parse_quoted_separator():
    assert parse_line('"a,b",c') == ["a,b", "c"]


def test_parse_other_separator():
    assert parse_line("a;b", sep=";") == ["a", "b"]


def test_read_records():
    assert read_records("x,y\n1,2\n3,4") == [{"x": "1", "y": "2"}, {"x": "3", "y": "4"}]


def test_read_records_rejects_short_rows():
    with pytest.raises(ValueError, match="line 2"):
        read_records("x,y\n1")
