"""The fields of a page's urlencoded form (python-multipart is needed only for uploads)."""

from __future__ import annotations

from collections import defaultdict
from urllib.parse import parse_qsl

from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request

MAX_FORM_BYTES = 64 * 1024


async def form_fields(request: Request) -> ImmutableMultiDict:
    """The body's fields (repeated names kept, as a multidict); a body past MAX_FORM_BYTES is cut there."""
    body = await request.body()
    return ImmutableMultiDict(parse_qsl(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), keep_blank_values=True,
                                        max_num_fields=1000))


def blank(found: dict[str, str] | None) -> defaultdict[str, str]:
    """Errors or values for a template: a field without one reads as "" (the templates are strict)."""
    return defaultdict(str, found or {})


__all__ = ["MAX_FORM_BYTES", "blank", "form_fields"]
