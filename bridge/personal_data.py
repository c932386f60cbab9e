"""National identity numbers: the personal data the bridge must never echo or log.

Pure (no framework imports): used by the event parser for the values it quotes
back in error details, and by the log processor for every log line.
"""

from __future__ import annotations

import re

# An 11-digit run not inside a longer one: Norwegian fødselsnummer/D-number.
# Masking a few false positives (other 11-digit numbers) is the safe side, with one
# exception: UUIDs (correspondence and attachment ids) are matched first and kept,
# since about 1 in 230 random ones has an 11-digit run in its last group and a
# masked id cannot be searched for.
_NATIONAL_ID_OR_UUID = re.compile(
    r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?<!\d)\d{11}(?!\d)"
)
MASK = "***********"


def _mask_match(match: re.Match[str]) -> str:
    return match.group("uuid") or MASK


_ELEVEN_DIGITS = re.compile(r"\d{11}")


def mask_national_ids(text: str) -> str:
    """``text`` with every 11-digit national identity number replaced by asterisks."""
    # Most values (and every UUID but ~1 in 230) hold no 11-digit run: one cheap search instead
    # of a substitution that calls back for each UUID.
    if _ELEVEN_DIGITS.search(text) is None:
        return text
    return _NATIONAL_ID_OR_UUID.sub(_mask_match, text)
