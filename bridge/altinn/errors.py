"""What can go wrong talking to Maskinporten and Altinn, named once.

Messages say what failed and what Altinn or Maskinporten answered, and never carry
a private key, a signed assertion or a token: callers print them as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Longest stretch of a response body quoted in an error message.
_MAX_QUOTE = 500


class AltinnError(Exception):
    """A call to Maskinporten or Altinn failed; the message is safe to show."""


class TokenError(AltinnError):
    """No Altinn token: Maskinporten refused the grant, or Altinn the exchange."""


class ApiError(AltinnError):
    """Altinn answered an API call with an error (after any retries)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def quote_body(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` shortened for a message, with any of ``secrets`` cut out.

    Maskinporten and Altinn do not echo credentials, but an error body is
    foreign text: anything we sent is removed before it reaches a terminal.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_QUOTE else text[:_MAX_QUOTE] + "…"
