from textkit import count_words, slugify, wrap


def test_slugify_plain_words():
    assert slugify("hello") == "hello"


def test_slugify_lowercases():
    assert slugify("ABC") == "abc"


def test_count_words_simple():
    assert count_words("one two three") == 3


def test_wrap_short_text_is_one_line():
    assert wrap("a b c", 10) == ["a b c"]


def test_wrap_keeps_long_words_whole():
    assert wrap("abcdefghij", 4) == ["abcdefghij"]
