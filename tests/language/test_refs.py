import pytest

from planner.errors import RefError
from planner.language.refs import Ref, iter_refs, parse_ref, resolve, schema_allows_path, walk_path


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("s1", Ref("s1")),
        ("s1.hotels", Ref("s1", ("hotels",))),
        ("s1.hotels.0.name", Ref("s1", ("hotels", "0", "name"))),
        ("get-data_2.x", Ref("get-data_2", ("x",))),
    ],
)
def test_parse_ref(text, ref):
    assert parse_ref(text) == ref
    assert str(parse_ref(text)) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("", "empty"), ("s1..x", "empty path segment"), ("s1.", "empty path segment"),
     ("1abc", "not a step id"), ("a b", "not a step id"), (3, "must be a string"),
     (None, "must be a string")],
)
def test_malformed_refs(text, fragment):
    with pytest.raises(RefError, match=fragment):
        parse_ref(text)


def test_iter_refs_finds_nested_and_reports_malformed():
    args = {"a": [1, {"$ref": "x.y"}], "b": {"c": {"$ref": "z"}},
            "d": {"$ref": "q", "other": 1}, "e": {"$ref": 5}}
    found = dict(iter_refs(args))
    assert found[("a", 1)] == Ref("x", ("y",))
    assert found[("b", "c")] == Ref("z")
    assert isinstance(found[("d",)], RefError) and "no other keys" in str(found[("d",)])
    assert isinstance(found[("e",)], RefError)


def test_resolve_paths_and_list_indexes():
    outputs = {"s1": {"hotels": [{"name": "A"}, {"name": "B"}]}, "s2": 7, "s3": None}
    value = {"n": {"$ref": "s1.hotels.1.name"}, "all": [{"$ref": "s2"}, "lit"],
             "last": {"$ref": "s1.hotels.-1.name"}, "skipped": {"$ref": "s3"}}
    assert resolve(value, outputs) == {"n": "B", "all": [7, "lit"], "last": "B",
                                       "skipped": None}


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [("s1.nope", "has no key 'nope'"), ("s1.hotels.5", "out of range"),
     ("s1.hotels.x", "not an index"), ("s1.hotels.--1", "not an index"),
     ("s2.x", "is int, it has no 'x'")],
)
def test_walk_path_errors_say_where(ref, fragment):
    outputs = {"s1": {"hotels": [{"name": "A"}]}, "s2": 7}
    r = parse_ref(ref)
    with pytest.raises(RefError, match=fragment):
        walk_path(outputs[r.step], r)


def test_resolve_unknown_step():
    with pytest.raises(RefError, match="no output for step 'zz'"):
        resolve({"$ref": "zz"}, {})


def test_schema_allows_path():
    schema = {
        "type": "object",
        "properties": {"hotels": {"type": "array", "items": {"$ref": "#/$defs/H"}},
                       "n": {"type": "integer"}},
        "additionalProperties": False,
        "$defs": {"H": {"type": "object", "properties": {"name": {"type": "string"}}}},
    }
    assert schema_allows_path(schema, ("hotels", "0", "name")) is None
    assert "no key 'nope'" in schema_allows_path(schema, ("nope",))
    assert "not an index" in schema_allows_path(schema, ("hotels", "x"))
    assert "not an index" in schema_allows_path(
        {"type": "array", "prefixItems": [{"type": "string"}]}, ("--1",))
    assert "has no 'x'" in schema_allows_path(schema, ("n", "x"))
    assert schema_allows_path({}, ("anything", "0")) is None
    assert schema_allows_path({"anyOf": [{"type": "integer"}, {"type": "object"}]},
                              ("k",)) is None
