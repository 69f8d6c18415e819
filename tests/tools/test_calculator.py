import pytest

from planner.errors import CalculationError, PermanentError
from planner.tools.builtin.calculator import calculate_expression


@pytest.mark.parametrize(
    ("expr", "value"),
    [("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("-2 ** 2", -4), ("(-2) ** 2", 4),
     ("7 // 2", 3), ("7 % 4", 3), ("7 / 2", 3.5), ("2 ** -1", 0.5), ("+5 - -5", 10),
     ("1.5e3 + 0.5", 1500.5), ("2 ** 100", 2**100)],
)
def test_arithmetic(expr, value):
    assert calculate_expression(expr) == value


def test_variables_bind_names():
    assert calculate_expression("rent + food * 2", {"rent": 100, "food": 10.5}) == 121.0


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("__import__('os').system('id')", "a call"),
        ("().__class__.__bases__", "attribute access"),
        ("x + 1", "unknown name 'x'"),
        ("open", "unknown name 'open'"),
        ("[1, 2][0]", "indexing"),
        ("lambda: 1", "a lambda"),
        ("1 if 1 else 2", "IfExp"),
        ("1 < 2", "a comparison"),
        ("'a' * 3", "only numbers"),
        ("True + 1", "only numbers"),
        ("2 ** 99999", "exponent 99999"),
        ("9 ** 9 ** 9", "exponent"),
        ("10 ** 5000", "too large"),
        ("1e308 * 10", "not a finite number"),
        ("2.0 ** 5000", "too large"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 / 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("1 +", "not an arithmetic expression"),
        ("", "empty"),
        ("-" * 80 + "1", "nests deeper"),
        ("1+" * 600 + "1", "characters"),
        ("1\n+1; import os", "not an arithmetic expression"),
    ],
)
def test_hostile_and_bad_input_is_a_clear_permanent_error(expr, fragment):
    with pytest.raises(CalculationError) as info:
        calculate_expression(expr)
    assert isinstance(info.value, PermanentError)
    if fragment:
        assert fragment in str(info.value)


def test_deep_parentheses_alone_are_fine_but_deep_operations_are_not():
    # Parentheses add no AST nodes; only real nesting of operations counts.
    assert calculate_expression("(" * 40 + "1" + ")" * 40) == 1
    with pytest.raises(CalculationError, match="nests deeper"):
        calculate_expression("(1+" * 60 + "1" + ")" * 60)


def test_bad_variables():
    with pytest.raises(CalculationError, match="not a number"):
        calculate_expression("x", {"x": "1"})
    with pytest.raises(CalculationError, match="not an identifier"):
        calculate_expression("1", {"a b": 1})
