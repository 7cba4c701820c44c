"""The JSON and TOML readers: size and depth limits before parsing, one error type."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oatomo import _documents
from oatomo._documents import MAX_DEPTH, parse_json, parse_toml, read_json, read_toml
from oatomo.errors import InputError

_leaves = st.none() | st.booleans() | st.integers(-2**63, 2**64) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
_json_values = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(st.text(max_size=4), inner, max_size=4),
                            max_leaves=30)


def _depth(v):
    if isinstance(v, dict):
        return 1 + max(map(_depth, v.values()), default=0)
    if isinstance(v, list):
        return 1 + max(map(_depth, v), default=0)
    return 0


@settings(max_examples=200, deadline=None)
@given(_json_values)
def test_json_round_trips_within_the_limits(value):
    assert parse_json(json.dumps(value), "doc") == value


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20000), st.sampled_from(["[]", "{}", "{\"a\": ", "[1, "]))
def test_json_nesting_is_refused_not_recursed(depth, kind):
    """Any depth: a value (up to MAX_DEPTH) or one InputError, never a RecursionError."""
    opener, closer = {"[]": ("[", "]"), "{}": ('{"a": ', "}"), "{\"a\": ": ('{"a": ', "}"),
                      "[1, ": ("[1, ", "]")}[kind]
    text = opener * depth + "0" + closer * depth
    if depth <= MAX_DEPTH:
        assert _depth(parse_json(text, "doc")) == depth
    else:
        with pytest.raises(InputError, match="nested"):
            parse_json(text, "doc", "f.json")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6000), st.sampled_from(["array", "inline", "dotted", "header"]))
def test_toml_nesting_is_refused_not_recursed(depth, kind):
    text = {"array": "x = " + "[" * depth + "1" + "]" * depth,
            "inline": "x = " + "{a = " * depth + "1" + "}" * depth,
            "dotted": ".".join(["a"] * depth) + " = 1",
            "header": "[" + ".".join(["a"] * depth) + "]\nb = 1"}[kind]
    if depth < MAX_DEPTH - 1:
        parse_toml(text, "doc")
    elif depth > MAX_DEPTH:
        with pytest.raises(InputError, match="nested"):
            parse_toml(text, "doc", "f.toml")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(alphabet="[]{}\"'#=.,:\n ab1\\", max_size=300))
def test_any_bytes_give_a_value_or_one_input_error(data):
    for parse in (parse_json, parse_toml):
        try:
            parse(data, "doc", "f")
        except InputError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("f: ")


def test_strings_and_comments_do_not_count_as_nesting():
    text = json.dumps({"s": "[" * 10000 + "{" * 10000})
    assert parse_json(text, "doc")["s"].startswith("[[")
    toml = 's = "' + "[" * 5000 + '"\nt = \'' + "{" * 5000 + "'\n# " + "[" * 5000 + "\n"
    assert parse_toml(toml, "doc")["s"].startswith("[[")


def test_non_finite_and_huge_numbers_are_refused():
    for text in ('{"a": NaN}', '{"a": Infinity}', '{"a": 1e400}', '{"a": 1' + "0" * 50 + "}"):
        with pytest.raises(InputError, match="not valid JSON"):
            parse_json(text, "doc", "f.json")
    assert parse_json('{"seed": 18446744073709551615}', "doc") == {"seed": 2**64 - 1}


def test_size_limit_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(_documents, "MAX_DOCUMENT_BYTES", 1000)
    big = tmp_path / "big.json"
    big.write_text("[" + "0, " * 1000 + "0]")
    with pytest.raises(InputError, match="MiB a document may have"):
        read_json(big, "calibration file")
    monkeypatch.setenv("OATOMO_MAX_BYTES", "1K")
    monkeypatch.setattr(_documents, "MAX_DOCUMENT_BYTES", 1 << 20)
    with pytest.raises(InputError, match="OATOMO_MAX_BYTES"):
        read_json(big, "calibration file")


def test_fifo_and_directory_are_refused(tmp_path):
    import os

    os.mkfifo(tmp_path / "f.toml")
    with pytest.raises(InputError, match="FIFO"):
        read_toml(tmp_path / "f.toml", "setup file")
    with pytest.raises(InputError, match="directory"):
        read_json(tmp_path, "manifest")
    with pytest.raises(InputError, match="not found"):
        read_json(tmp_path / "none.json", "manifest")
