"""The public entry points: `compile()`, `compile_for_type()`, `compile_many()`, `evaluate()`, `result_type()`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sante.fhirpath.compiler import Compiler, translate_error
from sante.fhirpath.errors import FHIRPathError
from sante.fhirpath.parser import Node, parse

Evaluator = Callable[..., list[Any]]


def _dispatcher(build: Callable[[str | None], Evaluator], impls: dict[str | None, Evaluator]) -> Evaluator:
    """`fn(resource, variables=None)`: the specialisation for the resource's type, generated on first use.

    The specialisations translate their own errors into FHIRPathError, so the fast path is one dictionary
    look-up and one call; the except clause only sees failures of the look-up itself.
    """

    def specialise(resource: Any) -> Evaluator:
        root_type = resource.get("resourceType") if type(resource) is dict else None
        impl = impls.get(root_type)
        if impl is None:
            impl = impls[root_type] = build(root_type)
        return impl

    def evaluate_compiled(resource: Any, variables: dict[str, Any] | None = None) -> list[Any]:
        try:
            impl = impls[resource["resourceType"]]
        except (KeyError, TypeError, IndexError):
            impl = specialise(resource)
        return impl(resource, variables)

    return evaluate_compiled


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
    else:
        generic = Compiler(expression, None, strict)
        try:
            impl = generic.build(tree)
        except FHIRPathError:  # as before: reported when an input of the offending type is evaluated
            pass
        else:
            if generic.input_free:  # `1 + 1`, `'a'.upper()`: the same code for every input, no dispatch
                return impl
            impls[None] = impl

    def build(root_type: str | None) -> Evaluator:
        return Compiler(expression, root_type, strict).build(tree)

    fn = _dispatcher(build, impls)
    fn.__doc__ = f"Compiled FHIRPath: {expression}"
    return fn


def compile_for_type(expression: str, focus_type: str) -> Evaluator:
    """`fn(node, variables=None) -> list` for inputs of one known type: a resource or data type, or a backbone
    element named by its path ("QuestionnaireResponse.item"). Unlike compile(), which types its input by the
    resourceType it carries, a JSON object without one is navigated as that type too (choice elements, ofType).
    """
    return Compiler(expression, focus_type, False).build(parse(expression))


def result_type(expression: str, focus_type: str | None) -> str | None:
    """The type (or backbone element path) of every item `expression` gives for a `focus_type` input, when the
    model determines a single one (`Patient`, `name` -> "HumanName"); None when unknown, several or invalid."""
    try:
        types = Compiler(expression, focus_type, False).result_type(parse(expression))
    except FHIRPathError:
        return None
    if types is None or len(types) != 1:
        return None
    return next(iter(types))[1]


def compile_many(expressions: list[str], *, strict: bool = False) -> Callable[..., list[Any]]:
    """Compile several expressions into `fn(resource, variables=None) -> list`, one result per expression.

    Per resource type ONE Python function evaluates all of them, so the per-call overhead is paid once and
    navigation the expressions share (`Observation.subject` in several search parameters) runs once. Results
    equal those of `compile(expression)(resource, variables)`, in the order given, and should be treated as
    read-only (two slots may share a list).

    Errors are isolated per expression: an expression that fails on this input leaves the FHIRPathError that
    `compile()` would have raised in its slot (the exception object, not a list), and the others are computed
    as usual; check with `isinstance(slot, Exception)`. Syntax errors raise FHIRPathError here, at once.
    """
    exprs = list(expressions)
    trees: list[Node] = [parse(e) for e in exprs]
    singles = [compile(e, strict=strict) for e in exprs]

    def slow(resource: Any, variables: dict[str, Any] | None = None) -> list[Any]:
        out: list[Any] = []
        for fn, expression in zip(singles, exprs, strict=True):
            try:
                out.append(fn(resource, variables))
            except Exception as e:
                out.append(translate_error(e, expression))
        return out

    def build(root_type: str | None) -> Evaluator:
        return Compiler("", root_type, strict).build_many(exprs, trees, slow)

    fn = _dispatcher(build, {})
    fn.__doc__ = f"Compiled FHIRPath ({len(exprs)} expressions)"
    return fn


_CACHE: dict[str, Evaluator] = {}


def evaluate(resource: Any, expression: str, variables: dict[str, Any] | None = None) -> list[Any]:
    """Evaluate an expression on a resource (or any node); compiled expressions are cached."""
    fn = _CACHE.get(expression)
    if fn is None:
        if len(_CACHE) > 10_000:
            _CACHE.clear()
        fn = _CACHE[expression] = compile(expression)
    return fn(resource, variables)
