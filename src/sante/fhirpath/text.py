"""Helpers on FHIRPath source text (for callers that inspect expressions without compiling them)."""

from __future__ import annotations


def split_top_level(expr: str, separator: str) -> list[str] | None:
    """`expr` split on `separator` outside parentheses, brackets and string literals; None when unbalanced."""
    parts, depth, quote, last, i = [], 0, "", 0, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and expr.startswith(separator, i):
            parts.append(expr[last:i])
            last = i = i + len(separator)
            continue
        i += 1
    if depth or quote:
        return None
    parts.append(expr[last:])
    return parts
