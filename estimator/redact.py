"""Passwords never reach a message, a log line or the store: one rule, used by both tools and the store."""

from __future__ import annotations

import re

# Passwords as database URLs and connection strings carry them: user:PASSWORD@host, ?password=..., password=...
# (the last @ before the host ends the password: one written with an unescaped @ is hidden whole)
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<secret>\S*)(?P<tail>@[^@\s/]+)")
_KEY_PASSWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd|sslpassword)\s*=\s*)(?P<secret>'[^']*'|[^&\s;]+)",
                           re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with every password in a URL or key=value connection string replaced by ***."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}***{m['tail']}", str(text))
    return _KEY_PASSWORD.sub(lambda m: f"{m['head']}***", text)


def secrets_in(text: str) -> list[str]:
    """The passwords ``text`` holds, and the pieces of one written with an unescaped @ (a driver that misreads
    such a URL echoes the rest of the password as a host name)."""
    found = [m["secret"] for m in _URL_PASSWORD.finditer(text)]
    found += [m["secret"].strip("'") for m in _KEY_PASSWORD.finditer(text)]
    pieces = [piece for secret in found for piece in secret.split("@") if len(piece) >= 3]
    return sorted({s for s in found + pieces if s}, key=len, reverse=True)


def mask_known(text: str, source: str) -> str:
    """``text`` (an error a driver raised about ``source``) with every password of ``source`` hidden."""
    text = mask_secrets(text)
    for secret in secrets_in(source):
        text = text.replace(secret, "***")
    return text
