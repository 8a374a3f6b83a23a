"""The network of a sandbox with `network=True`: its own network namespace, connected to the outside
by slirp4netns (user-mode NAT, a process in the host's namespace), never the host's namespace itself.

What the sandbox cannot reach: the host's loopback (slirp4netns --disable-host-loopback; its own
127.0.0.1 is its own loopback), the host's addresses, private, shared, link-local (cloud metadata)
and multicast ranges, and other sandboxes (each has its own namespace and NAT). Those destinations get
`unreachable` routes, added while the sandbox still holds CAP_NET_ADMIN in its namespace: user code,
without capabilities, cannot remove them, nor open raw sockets around them. The slirp4netns DNS
forwarder (10.0.2.3) stays reachable: its /24 is more specific than 10.0.0.0/8.

Standard library only, loaded by `launcher.py` from its own directory; errors are OSErrors.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import select
import socket
import struct

DNS = "10.0.2.3"
BLOCKED = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
)
READY_TIMEOUT_S = 10.0
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

RTM_NEWROUTE, NLMSG_ERROR = 24, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 1, 4, 0x200, 0x400
RT_TABLE_MAIN, RTPROT_STATIC, RT_SCOPE_UNIVERSE, RTN_UNREACHABLE, RTA_DST = 254, 4, 0, 7, 1


class Slirp:
    """A slirp4netns forked in the host's network namespace, waiting to be told which namespace
    to connect. It dies with the launcher (its parent) through PDEATHSIG."""

    def __init__(self, binary: str, user_namespace: bool) -> None:
        self.pid_r, self.pid_w = os.pipe()
        self.ready_r, self.ready_w = os.pipe()
        parent = os.getpid()
        self.child = os.fork()
        if self.child == 0:
            try:
                self._exec(binary, user_namespace, parent)
            finally:
                os._exit(127)
        os.close(self.pid_r)
        os.close(self.ready_w)

    def _exec(self, binary: str, user_namespace: bool, parent: int) -> None:
        _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
        if os.getppid() != parent:
            return
        os.close(self.pid_w)
        os.close(self.ready_r)
        os.dup2(self.pid_r, 3)
        os.dup2(self.ready_w, 4)
        os.closerange(5, 65536)  # none of the agent's pipes: the host must see their EOF
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # nobody would drain a pipe for its log over the session's life
            os.dup2(devnull, fd)
        target = b""
        while not target.endswith(b"\n"):
            chunk = os.read(3, 32)
            if not chunk:
                return
            target += chunk
        pid = target.decode().strip()
        argv = [binary, "--configure", "--mtu=65520", "--disable-host-loopback", "--ready-fd=4"]
        if user_namespace:
            argv.append(f"--userns-path=/proc/{pid}/ns/user")
        else:
            argv.append(
                "--enable-sandbox"
            )  # as root: its own mount namespace, capabilities dropped
        os.execv(binary, [*argv, pid, "tap0"])

    def connect(self, blocked: list[str]) -> None:
        """Connect this process's (new) network namespace, wait until it is configured, then make
        the forbidden destinations unreachable."""
        os.write(self.pid_w, f"{os.getpid()}\n".encode())
        os.close(self.pid_w)
        ready, _, _ = select.select([self.ready_r], [], [], READY_TIMEOUT_S)
        signal = os.read(self.ready_r, 1) if ready else b""
        os.close(self.ready_r)
        if signal != b"1":
            raise OSError(
                5,
                "slirp4netns did not set up the sandbox's network (it needs /dev/net/tun, and "
                "user namespaces when the engine is not root)",
            )
        block_routes([*BLOCKED, *(f"{address}/32" for address in blocked)])


def block_routes(prefixes: list[str]) -> None:
    """Add an `unreachable` route for each IPv4 prefix (rtnetlink; iproute2 is not needed)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        for seq, prefix in enumerate(prefixes, 1):
            net = ipaddress.ip_network(prefix, strict=False)
            if net.version != 4:
                continue
            dst = net.network_address.packed
            attr = struct.pack("=HH", 4 + len(dst), RTA_DST) + dst
            body = struct.pack(
                "=BBBBBBBBI",
                socket.AF_INET,
                net.prefixlen,
                0,
                0,
                RT_TABLE_MAIN,
                RTPROT_STATIC,
                RT_SCOPE_UNIVERSE,
                RTN_UNREACHABLE,
                0,
            )
            flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
            header = struct.pack("=LHHLL", 16 + len(body) + len(attr), RTM_NEWROUTE, flags, seq, 0)
            sock.send(header + body + attr)
            reply = sock.recv(65536)
            _, kind, _, _, _ = struct.unpack_from("=LHHLL", reply)
            if kind == NLMSG_ERROR:
                (error,) = struct.unpack_from("=i", reply, 16)
                if error and -error != 17:  # EEXIST: the same host address listed twice
                    raise OSError(-error, f"route {prefix}: {os.strerror(-error)}")
