"""FHIRPath text -> abstract syntax tree (a tokenizer and a precedence-climbing parser).

The tree is made of `Node`s: `kind` says what it is, `pos` is the offset of its first character (errors name
it), `args` holds the children. Kinds:

- `lit` (value, system type name), `empty` (`{}`), `quantity` (Quantity)
- `ident` (name): an identifier at the start of a path or inside a function argument
- `member` (base, name), `call` (base or None, name, [argument nodes]), `index` (base, index)
- `this`, `index_var`, `total`, `var` (name without `%`)
- `unary` (op, operand), `binary` (op, left, right), `type_op` (op "is"/"as", left, type name)
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from sante.fhirpath.errors import FHIRPathError
from sante.fhirpath.quantity import CALENDAR_UNITS, Quantity
from sante.fhirpath.temporal import parse_date, parse_datetime, parse_time


class Node:
    __slots__ = ("args", "kind", "pos")

    def __init__(self, kind: str, pos: int, *args: Any) -> None:
        self.kind = kind
        self.pos = pos
        self.args = args

    def __repr__(self) -> str:
        return f"{self.kind}{self.args!r}"


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<date>@T\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+\-]\d{2}:\d{2})?
      |@\d{4}(?:-\d{2}(?:-\d{2})?)?(?:T(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?(?:Z|[+\-]\d{2}:\d{2})?)?)
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<btident>`(?:[^`\\]|\\.)*`)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<special>\$this|\$index|\$total)
  | (?P<ext>%(?:[A-Za-z_][A-Za-z0-9_\-]*|`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*'))
  | (?P<op><=|>=|!=|!~|[-+*/&|=~<>()\[\]{},.])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(body: str, expr: str, pos: int) -> str:
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            if nxt not in _ESCAPES:
                raise FHIRPathError(f"invalid escape \\{nxt}", expr, pos + i, "syntax")
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def tokenize(expr: str) -> list[tuple[str, str, int]]:
    """(type, text, offset) tokens, ending with ("eof", "", len)."""
    tokens = []
    pos = 0
    n = len(expr)
    while pos < n:
        if expr.startswith("/*", pos) and expr.find("*/", pos + 2) < 0:
            raise FHIRPathError("unterminated comment", expr, pos, "syntax")
        m = _TOKEN_RE.match(expr, pos)
        if not m or m.end() == pos:
            if expr.startswith("/*", pos):
                raise FHIRPathError("unterminated comment", expr, pos, "syntax")
            raise FHIRPathError(f"unexpected character {expr[pos]!r}", expr, pos, "syntax")
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append((kind, m.group(), pos))
        pos = m.end()
    tokens.append(("eof", "", n))
    return tokens


# Binding power of binary operators (higher binds tighter), as in the FHIRPath grammar.
_BINARY = {
    "implies": 1,
    "or": 2,
    "xor": 2,
    "and": 3,
    "in": 4,
    "contains": 4,
    "=": 5,
    "~": 5,
    "!=": 5,
    "!~": 5,
    "<": 6,
    ">": 6,
    "<=": 6,
    ">=": 6,
    "|": 7,
    "is": 8,
    "as": 8,
    "+": 9,
    "-": 9,
    "&": 9,
    "*": 10,
    "/": 10,
    "div": 10,
    "mod": 10,
}
_UNARY_BP = 11


class Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens = tokenize(expr)
        self.i = 0

    def error(self, message: str, pos: int | None = None) -> FHIRPathError:
        return FHIRPathError(message, self.expr, self.peek()[2] if pos is None else pos, "syntax")

    def peek(self, k: int = 0) -> tuple[str, str, int]:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def take(self) -> tuple[str, str, int]:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def expect(self, text: str) -> tuple[str, str, int]:
        t = self.peek()
        if t[1] != text or t[0] not in ("op",):
            raise self.error(f"expected {text!r} but found {t[1] or 'end of expression'!r}")
        return self.take()

    def parse(self) -> Node:
        if self.peek()[0] == "eof":
            raise self.error("empty expression")
        node = self.expression(0)
        t = self.peek()
        if t[0] != "eof":
            raise self.error(f"unexpected {t[1]!r}")
        return node

    def _binary_op(self) -> str | None:
        kind, text, _ = self.peek()
        if kind == "op" and text in _BINARY:
            return text
        if kind == "ident" and text in _BINARY:
            return text
        return None

    def expression(self, min_bp: int) -> Node:
        left = self.prefix()
        while True:
            op = self._binary_op()
            if op is None:
                break
            bp = _BINARY[op]
            if bp <= min_bp:
                break
            _, _, pos = self.take()
            if op in ("is", "as"):
                left = Node("type_op", pos, op, left, self.type_specifier())
                continue
            right = self.expression(bp)
            left = Node("binary", pos, op, left, right)
        return left

    def type_specifier(self) -> str:
        parts = [self.identifier()]
        while self.peek()[1] == "." and self.peek(1)[0] in ("ident", "btident"):
            self.take()
            parts.append(self.identifier())
        return ".".join(parts)

    def identifier(self) -> str:
        kind, text, pos = self.peek()
        if kind == "ident":
            self.take()
            return text
        if kind == "btident":
            self.take()
            return _unescape(text[1:-1], self.expr, pos + 1)
        raise self.error(f"expected an identifier but found {text or 'end of expression'!r}")

    def prefix(self) -> Node:
        kind, text, pos = self.peek()
        if kind == "op" and text in ("+", "-"):
            self.take()
            operand = self.expression(_UNARY_BP)
            return Node("unary", pos, text, operand)
        return self.postfix(self.term())

    def postfix(self, node: Node) -> Node:
        while True:
            kind, text, pos = self.peek()
            if kind == "op" and text == ".":
                self.take()
                npos = self.peek()[2]
                name = self.identifier()
                if self.peek()[1] == "(" and self.peek()[0] == "op":
                    node = Node("call", npos, node, name, self.arguments())
                else:
                    node = Node("member", npos, node, name)
            elif kind == "op" and text == "[":
                self.take()
                idx = self.expression(0)
                self.expect("]")
                node = Node("index", pos, node, idx)
            else:
                return node

    def arguments(self) -> list[Node]:
        self.expect("(")
        args: list[Node] = []
        if self.peek()[1] == ")":
            self.take()
            return args
        while True:
            args.append(self.expression(0))
            if self.peek()[1] == ",":
                self.take()
                continue
            self.expect(")")
            return args

    def term(self) -> Node:
        kind, text, pos = self.peek()
        if kind == "number":
            self.take()
            value: Any = Decimal(text) if "." in text else int(text)
            nk, ntext, _ = self.peek()
            if nk == "string":
                self.take()
                unit = _unescape(ntext[1:-1], self.expr, pos)
                return Node("quantity", pos, Quantity(Decimal(value), unit))
            if nk == "ident" and ntext in CALENDAR_UNITS:
                self.take()
                return Node("quantity", pos, Quantity(Decimal(value), ntext))
            return Node("lit", pos, value, "Decimal" if "." in text else "Integer")
        if kind == "string":
            self.take()
            return Node("lit", pos, _unescape(text[1:-1], self.expr, pos + 1), "String")
        if kind == "date":
            self.take()
            return self.temporal(text, pos)
        if kind == "special":
            self.take()
            return Node({"$this": "this", "$index": "index_var", "$total": "total"}[text], pos)
        if kind == "ext":
            self.take()
            name = text[1:]
            if name[0] in "`'":
                name = _unescape(name[1:-1], self.expr, pos + 2)
            return Node("var", pos, name)
        if kind == "op" and text == "(":
            self.take()
            inner = self.expression(0)
            self.expect(")")
            return inner
        if kind == "op" and text == "{":
            self.take()
            self.expect("}")
            return Node("empty", pos)
        if kind in ("ident", "btident"):
            if kind == "ident" and text in ("true", "false"):
                self.take()
                return Node("lit", pos, text == "true", "Boolean")
            name = self.identifier()
            if self.peek()[1] == "(" and self.peek()[0] == "op":
                return Node("call", pos, None, name, self.arguments())
            return Node("ident", pos, name)
        raise self.error(f"unexpected {text!r}" if text else "unexpected end of expression")

    def temporal(self, text: str, pos: int) -> Node:
        body = text[1:]
        if body.startswith("T"):
            t = parse_time(body[1:])
            if t is None:
                raise self.error(f"invalid time literal {text!r}", pos)
            return Node("lit", pos, t, "Time")
        if "T" in body:
            dt = parse_datetime(body, literal=True)
            if dt is None:
                raise self.error(f"invalid date/time literal {text!r}", pos)
            return Node("lit", pos, dt, "DateTime")
        d = parse_date(body)
        if d is None:
            raise self.error(f"invalid date literal {text!r}", pos)
        return Node("lit", pos, d, "Date")


def parse(expr: str) -> Node:
    """The syntax tree of an expression; FHIRPathError (kind "syntax") with the offending position."""
    return Parser(expr).parse()
