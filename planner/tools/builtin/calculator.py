"""Arithmetic over a whitelisted AST. Never ``eval``: the tree is walked node by node."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

from planner.errors import CalculationError

MAX_LENGTH = 1_000          # characters of input
MAX_DEPTH = 50              # nesting of operations
MAX_EXPONENT = 10_000       # |b| in a ** b
MAX_INT_BITS = 4_096        # size of any integer intermediate

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def calculate_expression(expression: str, variables: Mapping[str, Number] | None = None
                         ) -> Number:
    """Evaluate ``+ - * / // % **``, parentheses and unary minus over int and float literals,
    and over names bound to numbers in ``variables`` (any other name is an error)."""
    bound = dict(variables or {})
    for name, value in bound.items():
        if not name.isidentifier():
            raise CalculationError(f"variable name {name!r} is not an identifier")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CalculationError(f"variable {name!r} is {type(value).__name__}, not a number")
        _check(value)
    if len(expression) > MAX_LENGTH:
        raise CalculationError(f"expression is {len(expression)} characters; "
                               f"the limit is {MAX_LENGTH}")
    if not expression.strip():
        raise CalculationError("expression is empty")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculationError(f"not an arithmetic expression: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise CalculationError(f"expression nests deeper than {MAX_DEPTH} levels") from None
    return _check(_eval(tree.body, 0, bound))


def _eval(node: ast.expr, depth: int, bound: Mapping[str, Number]) -> Number:
    if depth > MAX_DEPTH:
        raise CalculationError(f"expression nests deeper than {MAX_DEPTH} levels")
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CalculationError(f"only numbers are allowed, not {value!r}")
        return _check(value)
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        if node.id not in bound:
            raise CalculationError(f"unknown name {node.id!r}; bind it in variables, or use "
                                   "numbers, + - * / // % ** and parentheses")
        return bound[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check(_UNARY[type(node.op)](_eval(node.operand, depth + 1, bound)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _eval(node.left, depth + 1, bound)
        right = _eval(node.right, depth + 1, bound)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            return _check(_BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculationError("division by zero") from None
        except OverflowError:
            raise CalculationError("result is too large") from None
    raise CalculationError(f"{_describe(node)} is not allowed; use numbers, "
                           "+ - * / // % ** and parentheses")


def _check_power(base: Number, exponent: Number) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculationError(f"exponent {exponent} is larger than {MAX_EXPONENT}")
    if (isinstance(base, int) and isinstance(exponent, int) and exponent > 0
            and abs(base) > 1 and base.bit_length() * exponent > MAX_INT_BITS):
        raise CalculationError(f"result is too large (over {MAX_INT_BITS} bits)")
    if base == 0 and exponent < 0:
        raise CalculationError("division by zero")


def _check(value: Number) -> Number:
    if isinstance(value, complex):
        raise CalculationError("result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise CalculationError(f"result is too large (over {MAX_INT_BITS} bits)")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculationError("result is not a finite number")
    return value


def _describe(node: ast.AST) -> str:
    names = {ast.Name: "a name", ast.Attribute: "attribute access", ast.Call: "a call",
             ast.Subscript: "indexing", ast.Lambda: "a lambda", ast.Compare: "a comparison",
             ast.BoolOp: "a boolean operator"}
    for kind, text in names.items():
        if isinstance(node, kind):
            return text
    if isinstance(node, ast.BinOp | ast.UnaryOp):
        return f"the operator {type(node.op).__name__}"
    return type(node).__name__
