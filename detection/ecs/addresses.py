"""Client and server address text -> ECS address/ip/port/domain, the way Elastic's grok patterns read it.

Audit records write the caller's address in many shapes (`1.2.3.4`, `1.2.3.4:443`, `[v6]:port`, `::ffff:`
mapped v4, host names, `HOST (ADDR)`); Elastic tries a fixed list of patterns in order and the first one
that matches wins. The order matters (a bare `host:port` is read as a domain), so it is kept exactly.
"""

from __future__ import annotations

import ipaddress
import re

# `::ffff:a.b.c.d`, optionally bracketed with a port, collapses to the v4 address (and port).
_MAPPED_V4 = re.compile(r"\[?::ffff:([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)(?:\](:[0-9]+)?)?")
# Grok's IPV4: four 0-255 octets, leading zeros allowed.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[0-1]?[0-9]{1,2})"
_IPV4 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")
_V4_PORT = re.compile(rf"({_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}):([1-9][0-9]*)\b")
_PORT = re.compile(r"([1-9][0-9]*)\b")
_NOTSPACE = r"[^ \t\n\x0b\f\r]"
_ONE_TOKEN = re.compile(rf"{_NOTSPACE}+")
_BRACKET_HOST_PORT = re.compile(rf"\[({_NOTSPACE}+)\]:([1-9][0-9]*)\b")
_HOST_PORT = re.compile(rf"({_NOTSPACE}+):([1-9][0-9]*)\b")
_BRACKET_HOST_ADDR = re.compile(rf"\[({_NOTSPACE}+) \(([^)]*)\)\]")
_HOST_ADDR = re.compile(rf"({_NOTSPACE}+) \(([^)]*)\)")


def _grok_ip(text: str) -> bool:
    """Whether grok's IP pattern matches the whole text (IPv6 with optional zone, or dotted IPv4)."""
    if ":" in text:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            return False
        return True
    return _IPV4.fullmatch(text) is not None


_STRICT_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_STRICT_IPV4 = re.compile(rf"{_STRICT_OCTET}\.{_STRICT_OCTET}\.{_STRICT_OCTET}\.{_STRICT_OCTET}")


def valid_ip(text: str) -> bool:
    """Elastic's `convert: type: ip` check, which gates client.ip / server.ip (no leading zeros)."""
    if ":" not in text:
        return _STRICT_IPV4.fullmatch(text) is not None
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _ip_then_port(text: str) -> tuple[str, str] | None:
    """`IP:PORT` at the start of text (no end anchor, like grok's IPANDPORT)."""
    m = _V4_PORT.match(text)
    if m is not None:
        return m.group(1), m.group(2)
    # An IPv6 address followed by a port: try the longest address prefix first, as the regex would.
    pos = text.rfind(":")
    while pos > 0:
        if _grok_ip(text[:pos]):
            p = _PORT.match(text, pos + 1)
            if p is not None:
                return text[:pos], p.group(1)
        pos = text.rfind(":", 0, pos)
    return None


def _client_parts(text: str) -> tuple[str | None, str | None, str | None]:
    """(address, port, domain) from the first pattern that fits, in Elastic's order."""
    if text.startswith("["):
        close = text.find("]")
        if close > 0 and text.startswith(":", close + 1) and _grok_ip(text[1:close]):
            p = _PORT.match(text, close + 2)
            if p is not None:
                return text[1:close], p.group(1), None
    if _grok_ip(text):
        return text, None, None
    if text.startswith("[") and text.endswith("]") and _grok_ip(text[1:-1]):
        return text[1:-1], None, None
    found = _ip_then_port(text)
    if found is not None:
        return found[0], found[1], None
    # Elastic lists the host:port patterns after the single-token one, which shadows them (it stores
    # "localhost:443" as a domain, port included); trying them first keeps the port where it belongs.
    m = _BRACKET_HOST_PORT.match(text) or _HOST_PORT.match(text)
    if m is not None:
        return None, m.group(2), m.group(1)
    if _ONE_TOKEN.fullmatch(text):
        return None, None, text
    m = _BRACKET_HOST_ADDR.fullmatch(text) or _HOST_ADDR.fullmatch(text)
    if m is not None:
        return m.group(2), None, m.group(1)
    return text.partition("\n")[0], None, None


def parse_client(text: str) -> dict[str, object]:
    """Client address text -> {address, ip, port, domain} (only the keys that apply)."""
    m = _MAPPED_V4.fullmatch(text)
    if m is not None:
        text = m.group(1) + (m.group(2) or "")
    address, port, domain = _client_parts(text)
    out: dict[str, object] = {}
    if address is not None:
        out["address"] = address
        if valid_ip(address):
            out["ip"] = address
    if port is not None:
        out["port"] = int(port)
    if domain is not None:
        out["domain"] = domain
    return out


def parse_server(text: str) -> dict[str, object]:
    """Exchange's OriginatingServer (`NAME (ADDR)`, maybe bracketed) -> {address, domain, ip}."""
    text = text.replace("\n", "").replace("\r", "")
    out: dict[str, object] = {}
    m = _BRACKET_HOST_ADDR.fullmatch(text) or _HOST_ADDR.search(text)
    if m is not None:
        out["domain"], address = m.group(1), m.group(2)
    else:
        address = text
    out["address"] = address
    if valid_ip(address):
        out["ip"] = address
    return out
