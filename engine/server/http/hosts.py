"""The Host and Origin check against DNS rebinding: a web page on `attacker.example` can point its
name at 127.0.0.1 and then send requests the browser believes are same-origin, reaching a server
without a key. Such requests carry the attacker's name in `Host` (and `Origin`), so only these
are accepted: IP literals, `localhost`, the name the server was bound to, and the operator's
`--allow-host` names (`*` accepts any, for a proxy that checks itself).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class HostCheck:
    def __init__(self, bind_host: str, allowed: list[str]) -> None:
        self.any = "*" in allowed
        names = {name.strip().lower().rstrip(".") for name in allowed if name.strip() != "*"}
        self.names = frozenset(names | _LOCAL_NAMES | {bind_host.lower().rstrip(".")})

    def host_allowed(self, host_header: str | None) -> bool:
        """Whether a Host header (`name[:port]`) names this server. HTTP/1.1 requires the header;
        a request without one comes from no browser, so it is not a rebinding."""
        if self.any or host_header is None:
            return True
        return self._name_allowed(_host_name(host_header))

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a browser's Origin is this server itself; requests without one are not from a
        page's script. `null` (sandboxed frames, files) is refused."""
        if self.any or origin is None:
            return True
        try:
            parts = urlsplit(origin)
            name = parts.hostname
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not name:
            return False
        return self._name_allowed(name)

    def _name_allowed(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        if not name:
            return False
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return name in self.names
        return True  # an address: no name to rebind


def _host_name(header: str) -> str:
    header = header.strip()
    if header.startswith("["):  # [::1]:8000
        return header[1:].partition("]")[0]
    name, _, _port = header.rpartition(":") if header.count(":") == 1 else (header, "", "")
    return name
