"""The public entry points: `compile()` and `evaluate()`."""

from __future__ import annotations

from collections.abc import Callable
from decimal import DecimalException
from typing import Any

from sante.fhirpath.compiler import Compiler
from sante.fhirpath.errors import FHIRPathError
from sante.fhirpath.parser import parse

Evaluator = Callable[..., list[Any]]


def compile(expression: str, *, strict: bool = False, base_type: str | None = None) -> Evaluator:
    """Parse `expression` once and return `fn(resource_or_node, variables=None) -> list`.

    Syntax errors (and, with `strict=True`, paths the model does not have for `base_type`, or for the first
    input's resource type) raise FHIRPathError naming the position. `variables` maps names (without `%`) to
    values or lists of values.
    """
    tree = parse(expression)
    impls: dict[str | None, Evaluator] = {}
    if base_type is not None or strict:
        impls[base_type] = Compiler(expression, base_type, strict).build(tree)

    def specialise(root_type: str | None) -> Evaluator:
        impl = impls[root_type] = Compiler(expression, root_type, strict).build(tree)
        return impl

    def evaluate_compiled(resource: Any, variables: dict[str, Any] | None = None) -> list[Any]:
        try:
            impl = impls[resource["resourceType"]]
        except (KeyError, TypeError, IndexError):
            root_type = resource.get("resourceType") if type(resource) is dict else None
            impl = impls.get(root_type) or specialise(root_type)
        try:
            return impl(resource, variables)
        except FHIRPathError as e:
            if e.expression is None:  # raised by a runtime helper: say which expression failed
                raise FHIRPathError(f"{e} (evaluating {expression!r})", kind=e.kind) from e
            raise
        except (
            AttributeError,
            TypeError,
            KeyError,
            IndexError,
            ValueError,
            ArithmeticError,
            DecimalException,
            RecursionError,
        ) as e:
            raise FHIRPathError(f"cannot evaluate {expression!r}: {type(e).__name__}: {e}") from e

    evaluate_compiled.__doc__ = f"Compiled FHIRPath: {expression}"
    return evaluate_compiled


_CACHE: dict[str, Evaluator] = {}


def evaluate(resource: Any, expression: str, variables: dict[str, Any] | None = None) -> list[Any]:
    """Evaluate an expression on a resource (or any node); compiled expressions are cached."""
    fn = _CACHE.get(expression)
    if fn is None:
        if len(_CACHE) > 10_000:
            _CACHE.clear()
        fn = _CACHE[expression] = compile(expression)
    return fn(resource, variables)
