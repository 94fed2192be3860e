"""delivery/templating.py: placeholders parsed, refused and rendered (pure: no database)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delivery.templating import (
    MAX_VALUE_CHARS,
    Placeholder,
    TemplateSyntaxError,
    compile_lenient,
    compile_text,
    value_text,
)


def render(text: str, **values: object) -> str:
    return compile_text(text).render(values)


def test_plain_text_is_one_literal_part() -> None:
    template = compile_text("Hi { there }")

    assert template.parts == ("Hi { there }",)
    assert template.is_static


def test_a_tag_with_filters_compiles_to_a_placeholder() -> None:
    template = compile_text('Hi {{first_name| downcase |default:"there"}}!')

    assert template.parts == (
        "Hi ",
        Placeholder("first_name", (("downcase", ""), ("default", "there"))),
        "!",
    )
    assert template.names == frozenset({"first_name"})


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("Hi {{ first_name }}", {"first_name": "Ana"}, "Hi Ana"),
        ("Hi {{ first_name }}", {}, "Hi "),
        ('Hi {{ first_name | default: "there" }}', {}, "Hi there"),
        ("Hi {{ first_name | default: 'there' }}", {"first_name": ""}, "Hi there"),
        ('Hi {{ first_name | default: "there" }}', {"first_name": None}, "Hi there"),
        ("{{ a | upcase }}", {"a": "ça va"}, "ÇA VA"),
        ("{{ a | downcase }}", {"a": "ÇA Va"}, "ça va"),
        ("{{ a | capitalize }}", {"a": "éLODIE"}, "Élodie"),
        ('{{ a | upcase | default: "x" }}', {}, "x"),
        ('{{ a | default: "x" | upcase }}', {}, "X"),
        ("{{ n }} points", {"n": 42}, "42 points"),
        ("{{ n }}", {"n": 1.5}, "1.5"),
        ("{{ vip }}", {"vip": True}, "true"),
        ("{{ tags }}", {"tags": ["a", "b"]}, "a, b"),
        ("{{ nested }}", {"nested": {"a": 1}}, ""),
        ("{{ external_id }}/{{ x.y:z-w }}", {"external_id": "u1", "x.y:z-w": "k"}, "u1/k"),
        ('{{ a | default: "a|b" }}', {}, "a|b"),
    ],
)
def test_render(text: str, values: dict[str, object], expected: str) -> None:
    assert compile_text(text).render(values) == expected


def test_values_are_cut_to_the_bound() -> None:
    assert render("{{ a }}", a="x" * 1000) == "x" * MAX_VALUE_CHARS
    # ß upper-cases to SS: the cut is after the filters.
    assert render("{{ a | upcase }}", a="ß" * 200) == "S" * MAX_VALUE_CHARS


@pytest.mark.parametrize(
    ("text", "problem", "position"),
    [
        ("Hi {{ name", "unclosed", 3),
        ("Hi {{ a {{ b }}", "unclosed", 3),
        ("Hi name }}", "unopened", 8),
        ("{{ a }} }}", "unopened", 8),
        ("{{ }}", "empty", 0),
        ("x{{ | upcase }}", "bad_name", 1),
        ("{{ 1abc }}", "bad_name", 0),
        ("{{ a b }}", "bad_argument", 0),
        ("{{ user.__class__() }}", "bad_name", 0),
        ("{{ a | shout }}", "unknown_filter", 0),
        ("{{ a | upcase: 'x' }}", "bad_argument", 0),
        ("{{ a | default }}", "bad_argument", 0),
        ("{{ a | default: there }}", "bad_argument", 0),
        ('{{ a | default: "there }}', "bad_argument", 0),
        ("{{ a | default: '" + "x" * 201 + "' }}", "bad_argument", 0),
    ],
)
def test_refused(text: str, problem: str, position: int) -> None:
    with pytest.raises(TemplateSyntaxError) as refused:
        compile_text(text)

    assert (refused.value.problem, refused.value.position) == (problem, position)


def test_lenient_compile_sends_unparseable_stored_text_as_written() -> None:
    assert compile_lenient("{{ oops").render({"oops": "no"}) == "{{ oops"
    assert compile_lenient("Hi {{ a }}").render({"a": "b"}) == "Hi b"


def test_value_text_of_each_json_type() -> None:
    values: list[object] = [None, "s", 3, 2.5, False, [1, [2], "x"], {}]
    assert [value_text(v) for v in values] == [
        "",
        "s",
        "3",
        "2.5",
        "false",
        "1, x",
        "",
    ]


_pieces = st.sampled_from(
    ["{{", "}}", "|", ":", '"', "'", " ", "a", "default", "upcase", "x.y", "1", "é", "{", "}"]
)
_texts = st.lists(_pieces | st.text(max_size=5), max_size=40).map("".join)
_values = st.dictionaries(
    st.sampled_from(["a", "x.y", "default", "upcase"]),
    st.none() | st.text(max_size=400) | st.integers() | st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(text=_texts, values=_values)
def test_fuzz_only_the_syntax_error_escapes_and_output_is_bounded(
    text: str, values: dict[str, object]
) -> None:
    try:
        template = compile_text(text)
    except TemplateSyntaxError as error:
        assert 0 <= error.position <= len(text)
        return
    rendered = template.render(values)
    tags = sum(1 for part in template.parts if isinstance(part, Placeholder))
    assert len(rendered) <= len(text) + tags * MAX_VALUE_CHARS
    if template.is_static:
        assert rendered == text
