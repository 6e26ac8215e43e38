"""Calico's selector language: parsing, matching, canonical printing and error columns."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wren.selector import (
    All,
    And,
    Contains,
    EndsWith,
    Eq,
    Global,
    Has,
    In,
    Ne,
    Not,
    NotIn,
    Or,
    Selector,
    SelectorError,
    StartsWith,
    parse_selector,
)

LABELS = {"role": "rr", "zone": "us-east-1a", "kubernetes.io/hostname": "node-1", "empty": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("   ", True),
        ("all()", True),
        ("global()", True),
        ("role == 'rr'", True),
        ('role == "rr"', True),
        ("role == 'x'", False),
        ("missing == 'x'", False),
        ("role != 'x'", True),
        ("missing != 'x'", True),  # Calico: != matches when the label is absent
        ("role != 'rr'", False),
        ("zone in {'us-east-1a', 'us-east-1b'}", True),
        ("zone in {}", False),
        ("missing in {'a'}", False),
        ("zone not in {'us-east-1a'}", False),
        ("missing not in {'a'}", True),
        ("has(role)", True),
        ("has(missing)", False),
        ("!has(missing)", True),
        ("! has(role)", False),
        ("zone contains 'east'", True),
        ("zone starts with 'us-'", True),
        ("zone ends with '1a'", True),
        ("zone ends with '1b'", False),
        ("missing contains ''", False),
        ("empty == ''", True),
        ("kubernetes.io/hostname == 'node-1'", True),
        ("role == 'rr' && zone == 'nope'", False),
        ("role == 'rr' || zone == 'nope'", True),
        ("!(role == 'rr' && has(zone))", False),
        ("!!has(role)", True),
        ("(role == 'x' || has(zone)) && !has(missing)", True),
        ("role=='rr'&&has(zone)", True),
        ("\trole == 'rr'\n", True),
    ],
)
def test_selector_matches_labels_like_calico(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


def test_and_binds_tighter_than_or() -> None:
    sel = parse_selector("has(a) || has(b) && has(c)")
    assert sel == Or((Has("a"), And((Has("b"), Has("c")))))
    assert sel.matches({"a": ""})


def test_route_reflector_selector_from_calico_docs_parses() -> None:
    sel = parse_selector("route-reflector == 'true'")
    assert sel == Eq("route-reflector", "true")
    assert sel.matches({"route-reflector": "true"})
    assert not sel.matches({})


def test_operator_words_are_not_taken_from_longer_label_names() -> None:
    assert parse_selector("inside in {'x'}") == In("inside", ("x",))
    assert parse_selector("contains contains 'x'") == Contains("contains", "x")
    assert parse_selector("a not  in {'x'}") == NotIn("a", ("x",))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a startswith 'x'", 'a starts with "x"'),
        ("a endswith 'x'", 'a ends with "x"'),
        ("a notin {'x'}", 'a not in {"x"}'),
        ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
        (" (all() )", "all()"),
        ("a!='\"'", "a != '\"'"),
    ],
)
def test_spellings_calico_accepts_have_one_canonical_form(text: str, canonical: str) -> None:
    assert str(parse_selector(text)) == canonical


@pytest.mark.parametrize(
    "text",
    ["b == b", "'b1' == b", "b", "a b", "foo != ||", "foo in {'', ||", "foo in ''", "()", ")",
     "has(foo) &&", "a startswithx 'y'", "a not inx {'y'}"],
)
def test_selectors_calico_rejects_are_rejected(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(text)


def test_set_literals_are_deduplicated_and_sorted() -> None:
    assert parse_selector("a in {'b', 'a', 'b'}") == In("a", ("a", "b"))
    assert str(parse_selector("a in {'b', 'a'}")) == 'a in {"a", "b"}'


def test_canonical_form_uses_double_quotes_unless_the_value_has_one() -> None:
    assert str(parse_selector("a == 'x'")) == 'a == "x"'
    assert str(parse_selector("a == 'say \"hi\"'")) == "a == 'say \"hi\"'"


def test_canonical_form_keeps_the_tree_shape() -> None:
    sel = parse_selector("(has(a) && has(b)) && has(c)")
    assert sel == And((And((Has("a"), Has("b"))), Has("c")))
    assert str(sel) == "(has(a) && has(b)) && has(c)"
    assert parse_selector(str(sel)) == sel


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("a ==", 5, "expected a quoted string"),
        ("a = 'b'", 3, "expected =="),
        ("a == 'b", 6, "unterminated string"),
        ("(a == 'x'", 10, "expected )"),
        ("has(", 5, "expected a label name"),
        ("has(a", 6, "expected ) to close has("),
        ("a foo 'x'", 3, "expected an operator after label 'a'"),
        ("'x'", 1, "expected a label"),
        ("a == 'x' b", 10, "unexpected label 'b'"),
        ("a == 'x' & b", 10, "expected &&"),
        ("a == 'x' | b", 10, "expected ||"),
        ("a in 'x'", 6, "expected {"),
        ("a in {'x' 'y'}", 11, "expected , or }"),
        ("a in {x}", 7, "expected a quoted string in the set"),
        ("all(x)", 5, "expected ) after all("),
        ("a == 'x' && ", 13, "found end of selector"),
        ("a == 'x' # comment", 10, "unexpected character '#'"),
        ("!", 2, "found end of selector"),
    ],
)
def test_errors_point_at_the_column_of_the_problem(text: str, column: int, fragment: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_selector(text)
    assert err.value.column == column
    assert fragment in str(err.value)
    assert f"column {column}" in str(err.value)


def test_selector_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_selector("a ===")


def test_deep_nesting_gives_selector_error_not_recursion_error() -> None:
    with pytest.raises(SelectorError, match="nested deeper"):
        parse_selector("(" * 5000 + "has(a)" + ")" * 5000)
    with pytest.raises(SelectorError, match="negations"):
        parse_selector("!" * 5000 + "has(a)")


def test_label_names_longer_than_calico_allows_are_rejected() -> None:
    with pytest.raises(SelectorError, match="longer than 512"):
        parse_selector("a" * 513 + " == 'x'")


# -- property tests ------------------------------------------------------------------------------
label_keys = st.text(alphabet="abcxyzABZ0129_./-", min_size=1, max_size=12)
# A string cannot contain both quote characters: Calico's strings have no escapes.
values = st.text(max_size=8).filter(lambda v: not ('"' in v and "'" in v))

leaves: st.SearchStrategy[Selector] = st.one_of(
    st.just(All()),
    st.just(Global()),
    label_keys.map(Has),
    st.builds(Eq, label_keys, values),
    st.builds(Ne, label_keys, values),
    st.builds(Contains, label_keys, values),
    st.builds(StartsWith, label_keys, values),
    st.builds(EndsWith, label_keys, values),
    st.builds(In, label_keys, st.lists(values, max_size=3).map(tuple)),
    st.builds(NotIn, label_keys, st.lists(values, max_size=3).map(tuple)),
)


def _extend(children: st.SearchStrategy[Selector]) -> st.SearchStrategy[Selector]:
    many = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(children.map(Not), many.map(And), many.map(Or))


selectors = st.recursive(leaves, _extend, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(selectors)
def test_canonical_text_of_any_selector_parses_back_to_an_equal_selector(sel: Selector) -> None:
    text = str(sel)
    assert parse_selector(text) == sel
    assert str(parse_selector(text)) == text


@settings(max_examples=200, deadline=None)
@given(selectors, st.dictionaries(st.sampled_from(["a", "b", "x", "A", "0"]), values, max_size=4))
def test_reparsed_selector_matches_the_same_labels(sel: Selector, labels: dict[str, str]) -> None:
    assert parse_selector(str(sel)).matches(labels) == sel.matches(labels)


selector_alphabet = st.sampled_from(
    [*"ab=!&|(){},'\" \t\n.-_/", "in", "not", "has(", "all()", "global()", "contains",
     "starts", "with", "ends", "==", "!=", "&&", "||", "é"]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(selector_alphabet, max_size=25).map("".join)))
def test_parsing_arbitrary_text_raises_only_selector_error(text: str) -> None:
    try:
        sel = parse_selector(text)
    except SelectorError as e:
        assert 1 <= e.column <= len(text) + 1
    else:
        assert parse_selector(str(sel)) == sel
