"""What both clouds' ``TrafficSplit`` constructs share: reading an endpoint, the weights, the record type. Standard library only.

A cutover puts one DNS name in front of the old and the new endpoint. The
split is one integer, the percent of answers that name the new endpoint
(``new_weight_percent``); the old endpoint gets the rest, so the two weights
always sum to 100 and a step of a cutover changes nothing but these two
numbers. A DNS answer carries an address, never a port or a scheme, so both
endpoints must serve on the same port.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from lepton_cdk.contract.serving import TRITON_READY_PATH

WEIGHT_TOTAL = 100
"""Route 53 and Cloud DNS weights are relative; lepton-cdk always makes the two sum to this."""

DEFAULT_HEALTH_CHECK_PATH = TRITON_READY_PATH
DEFAULT_TTL_SEC = 60
SIDES = ("old", "new")
# How cdktf writes a string token (a value known at apply time) inside a Python string.
_TOKEN = re.compile(r"\$\{TfToken\[[A-Za-z0-9_.]+\]\}")


def is_token_text(value: object) -> bool:
    """True when ``value`` is a string holding a cdktf token (checked without importing cdktf)."""
    return isinstance(value, str) and bool(_TOKEN.search(value))


def split_weights(new_weight_percent: int) -> tuple[int, int]:
    """``(old, new)`` record weights for ``new_weight_percent`` (0-100) of the answers naming the new endpoint."""
    return WEIGHT_TOTAL - new_weight_percent, new_weight_percent


@dataclass(frozen=True)
class RoutedAddress:
    """One endpoint as DNS sees it: the address a record holds and how a health checker reaches it.

    ``record_type`` is ``A`` (IPv4), ``AAAA`` (IPv6) or ``CNAME`` (a host
    name, or a value known only at apply time). ``port`` is ``None`` when the
    value gave none and the scheme's default applies.
    """

    address: str
    record_type: str
    scheme: str = "http"
    port: int | None = None
    private: bool = False  # an RFC 1918 / unique-local address: no cloud's public health checkers reach it

    @property
    def effective_port(self) -> int:
        """The port requests reach: the one given, else 443 for https and 80 for http."""
        return self.port if self.port is not None else (443 if self.scheme == "https" else 80)


def parse_endpoint(value: str, prop: str) -> RoutedAddress | str:
    """``value`` (``https://host[:port]``, ``http://1.2.3.4:8080``, a bare host name or IP address) as a
    :class:`RoutedAddress`, or a problem line naming ``prop``, the value and the fix.

    A value holding a token (known only at apply time) is taken as a host name.
    """
    if not isinstance(value, str) or not value.strip():
        return f"{prop}={value!r} is not an endpoint; pass its URL (https://host[:port]) or address"
    if is_token_text(value):
        return RoutedAddress(address=value, record_type="CNAME")
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        return f"{prop}={value!r} is not a valid endpoint URL ({exc}); use e.g. 'https://model.example.com' or 'http://10.0.0.5:8080'"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{prop}={value!r} must be an http(s) URL or an address; use e.g. 'https://model.example.com' or 'http://10.0.0.5:8080'"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return (f"{prop}={value!r} carries a path, query or credentials, which DNS cannot route; pass only the scheme, host and "
                "port (the model's path stays the same on both endpoints)")
    host = parts.hostname
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if "." not in host.rstrip("."):
            return f"{prop}={value!r}: {host!r} is not a fully qualified host name; use e.g. 'model.example.com'"
        return RoutedAddress(address=host.rstrip("."), record_type="CNAME", scheme=parts.scheme, port=port)
    return RoutedAddress(address=str(ip), record_type="A" if ip.version == 4 else "AAAA", scheme=parts.scheme, port=port,
                         private=ip.is_private)


def split_record_type(old: RoutedAddress, new: RoutedAddress) -> str:
    """The type of the weighted records: the endpoints' own when they agree, else ``CNAME``.

    Both clouds require every record of one weighted set to have one type, so
    an IP address beside a host name is reached through a helper ``A``/``AAAA``
    record that the weighted ``CNAME`` names.
    """
    return old.record_type if old.record_type == new.record_type else "CNAME"


def check_split_props(problems: list[str], *, old: RoutedAddress | str, new: RoutedAddress | str, new_weight_percent: int,
                      ttl_sec: int, health_check_path: str, record_name: str) -> None:
    """Append to ``problems`` every reason the split cannot work (each naming the prop, the value and the fix)."""
    for side in (old, new):
        if isinstance(side, str):
            problems.append(side)
    if isinstance(new_weight_percent, bool) or not isinstance(new_weight_percent, int) or not 0 <= new_weight_percent <= WEIGHT_TOTAL:
        problems.append(f"new_weight_percent={new_weight_percent!r} must be a whole number from 0 (all traffic on the old endpoint) "
                        f"to {WEIGHT_TOTAL} (all on the new one)")
    if isinstance(ttl_sec, bool) or not isinstance(ttl_sec, int) or not 0 <= ttl_sec <= 86400:
        problems.append(f"ttl_sec={ttl_sec!r} must be a whole number of seconds from 0 to 86400; keep it short (60) during a "
                        "cutover so a step or a rollback takes effect within a minute")
    if not isinstance(health_check_path, str) or not health_check_path.startswith("/"):
        problems.append(f"health_check_path={health_check_path!r} must start with '/'; use e.g. {DEFAULT_HEALTH_CHECK_PATH!r}")
    if not is_token_text(record_name) and (not isinstance(record_name, str) or "." not in record_name.strip(".")
                                            or any(c.isspace() for c in record_name)):
        problems.append(f"record_name={record_name!r} is not a fully qualified DNS name; use the name callers use, e.g. "
                        "'model.internal.example.com'")
    if isinstance(old, RoutedAddress) and isinstance(new, RoutedAddress):
        if old.scheme != new.scheme:
            problems.append(f"the old endpoint speaks {old.scheme} and the new one {new.scheme}, but callers use one URL; serve both "
                            "over the same scheme")
        elif old.effective_port != new.effective_port:
            problems.append(f"the old endpoint serves on port {old.effective_port} and the new one on {new.effective_port}, but a DNS "
                            "answer carries no port; serve both on the same port (or put a load balancer on one port in front of each)")
    if isinstance(old, RoutedAddress) and isinstance(new, RoutedAddress) and old.address == new.address:
        problems.append(f"old_endpoint and new_endpoint are the same address ({old.address}); pass the endpoint traffic moves "
                        "from and the one it moves to")
