"""Server secrets kept in the data directory, outside the database: a stolen database cannot forge tokens or
rewrite the audit chain. Created on first use with mode 0600."""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Callable
from pathlib import Path


def load_or_create(data_dir: Path, name: str, size: int = 32, make: Callable[[], bytes] | None = None) -> bytes:
    """The secret `name`, created on first use: `size` random bytes, or what `make` returns (a PEM key pair)."""
    folder = data_dir / "secrets"
    path = folder / f"{name}.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key = make() if make is not None else _random.token_bytes(size)
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # atomic and never overwrites: two processes racing agree on the first key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


__all__ = ["load_or_create"]
