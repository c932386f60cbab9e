"""Who may post events: a secret token and a source address allowlist. Pure: no framework imports.

Altinn signs nothing and sends no credentials, so the secret travels in the
URL (``/api/v1/events/<token>``); other senders may use ``Authorization:
Bearer <token>``. Several tokens can be valid at once, for rotation. Tokens
are compared in constant time and never logged: :func:`fingerprint` names
one safely.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Altinn's published egress addresses (docs/http-api.md, "What Altinn really sends").
ALTINN_EGRESS: Final[dict[str, tuple[str, ...]]] = {
    "altinn-tt02": ("20.100.24.41/32",),
    "altinn-production": ("20.100.46.139/32",),
}

#: Characters a token may have: unreserved in a URL path, so it needs no encoding.
TOKEN_ALPHABET: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
MIN_TOKEN_LENGTH: Final = 24


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, for logs: 8 hex digits of its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:8]


class Tokens:
    """The accepted tokens; :meth:`match` compares in constant time against all of them."""

    def __init__(self, tokens: Iterable[str]) -> None:
        # Digests have one length, so not even a token's length leaks through timing.
        self._digests = [hashlib.sha256(t.encode()).digest() for t in tokens]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def match(self, presented: str) -> str | None:
        """The token's :func:`fingerprint` if ``presented`` equals one of the tokens, else None.

        Every token is compared, whatever matched, so timing says nothing about
        which one (or how much of one) was right. One SHA-256 per call: the
        fingerprint is the first 4 bytes of the same digest.
        """
        candidate = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(candidate, digest)
        return candidate[:4].hex() if found else None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if that is what it is."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or single addresses), with the ``altinn-*`` presets expanded; ``ValueError`` names a bad one."""
    networks: list[IPNetwork] = []
    for entry in entries:
        for cidr in ALTINN_EGRESS.get(entry.lower(), (entry,)):
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                presets = ", ".join(ALTINN_EGRESS)
                raise ValueError(f"{entry!r} is neither a CIDR nor a preset ({presets})") from None
    return tuple(networks)


def _address(text: str) -> IPAddress | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6]:port in Forwarded
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _in(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def forwarded_for(forwarded: str | None, x_forwarded_for: str | None) -> list[str]:
    """The client addresses a proxy chain reports, nearest proxy last.

    ``Forwarded`` (RFC 7239) ``for=`` values if present, else ``X-Forwarded-For``.
    """
    if forwarded:
        hops = []
        for element in forwarded.split(","):
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == "for":
                    hops.append(value)
        return hops
    if x_forwarded_for:
        return [hop.strip() for hop in x_forwarded_for.split(",")]
    return []


def client_address(
    peer: str | None, hops: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> IPAddress | None:
    """The address that counts for the allowlist.

    The peer, unless the peer is a trusted proxy: then the forwarded chain is
    walked from the nearest hop, skipping trusted proxies, and the first other
    address counts. A chain made only of trusted proxies yields the farthest; an
    unparsable hop stops the walk (None: not allowed).
    """
    address = _address(peer) if peer else None
    if address is None or not _in(address, trusted_proxies):
        return address
    for hop in reversed(hops):
        address = _address(hop)
        if address is None or not _in(address, trusted_proxies):
            return address
    return address


def allowed(address: IPAddress | None, allowlist: Sequence[IPNetwork]) -> bool:
    """True when no allowlist is set, or ``address`` is in it."""
    if not allowlist:
        return True
    return address is not None and _in(address, allowlist)


class Denied(Exception):
    """Why a request may not post events: ``reason`` is a bounded metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Guard:
    """Decides whether one event request may come in; built once from the settings."""

    def __init__(
        self,
        tokens: Iterable[str],
        *,
        required: bool,
        allowlist: Sequence[IPNetwork] = (),
        trusted_proxies: Sequence[IPNetwork] = (),
    ) -> None:
        self.required = required
        #: Whether :meth:`check` looks at the source address (and so needs it).
        self.checks_address = bool(allowlist)
        self._tokens = Tokens(tokens)
        self._allowlist = tuple(allowlist)
        self._trusted = tuple(trusted_proxies)

    def check(
        self,
        *,
        path_token: str | None,
        authorization: str | None,
        peer: str | None,
        forwarded: str | None = None,
        x_forwarded_for: str | None = None,
    ) -> str | None:
        """The fingerprint of the accepted token (None without authentication); raise :class:`Denied`.

        The address is checked first: a request from outside the allowlist learns
        nothing about tokens.
        """
        if self._allowlist:
            hops = forwarded_for(forwarded, x_forwarded_for) if self._trusted else []
            address = client_address(peer, hops, self._trusted)
            if not allowed(address, self._allowlist):
                raise Denied("address", "this source address may not post events")
        if not self.required:
            return None
        presented = path_token if path_token is not None else bearer_token(authorization)
        if presented is None:
            raise Denied(
                "missing_token",
                "a token is required: post to /api/v1/events/<token> or send Authorization: Bearer <token>",
            )
        matched = self._tokens.match(presented)
        if matched is None:
            raise Denied("wrong_token", f"the token (fingerprint {fingerprint(presented)}) is not accepted")
        return matched
