"""Several test hosts on one machine, made of Linux network namespaces.

Every host is a namespace of its own with one interface (``eth0``) on the test subnet, and the
bridge that joins them lives in a further namespace of its own. Both ends of every veth pair are
created inside namespaces (``ip -n BRIDGE link add ... peer ... netns HOST``), so nothing of the
test subnet ever exists in the machine's own (root) namespace: :meth:`Cluster.assert_isolated`
checks that before anything starts. Cutting a host off sets its own ``eth0`` down *inside its
namespace*; taking down a root-side link instead would make the kernel send the subnet's packets
to the default route, out of the machine.

Needs root and iproute2. :func:`unavailable_reason` says exactly why a machine cannot do this.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_SUBNET = "10.231.77.0/24"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def unavailable_reason() -> str | None:
    """None when network namespaces can be made here, else the exact reason."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    if os.geteuid() != 0:
        return f"network namespaces need root; running as uid {os.geteuid()}"
    probe = f"fwc-probe-{uuid.uuid4().hex[:6]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip() or made.returncode}"
    try:
        veth = _ip("-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1", check=False)
        if veth.returncode != 0:
            return f"veth pairs cannot be created in a namespace: {veth.stderr.strip()}"
        bridge = _ip("-n", probe, "link", "add", "b0", "type", "bridge", check=False)
        if bridge.returncode != 0:
            return f"bridges cannot be created in a namespace: {bridge.stderr.strip()}"
    finally:
        _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Host:
    name: str  # logical name, e.g. "stores"
    netns: str  # namespace name
    address: str  # on the test subnet

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(argv), **kwargs)

    def run(self, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(argv), **kwargs)

    def cut_off(self) -> None:
        """Take this host off the network: its own link goes down, inside its namespace."""
        _ip("-n", self.netns, "link", "set", "eth0", "down")

    def reconnect(self) -> None:
        _ip("-n", self.netns, "link", "set", "eth0", "up")


@dataclass
class Cluster:
    hosts: dict[str, Host] = field(default_factory=dict)
    bridge_netns: str = ""
    subnet: str = DEFAULT_SUBNET

    @classmethod
    def create(cls, names: Sequence[str], subnet: str = DEFAULT_SUBNET) -> Cluster:
        net = ipaddress.ip_network(subnet)
        if len(names) + 1 >= net.num_addresses - 2:
            raise ValueError(f"subnet {subnet} is too small for {len(names)} hosts")
        tag = uuid.uuid4().hex[:6]
        cluster = cls(bridge_netns=f"fwc-{tag}-br", subnet=subnet)
        assert_isolated(subnet)  # before: nothing of the subnet may be in the root namespace already
        try:
            _ip("netns", "add", cluster.bridge_netns)
            _ip("-n", cluster.bridge_netns, "link", "add", "br0", "type", "bridge")
            _ip("-n", cluster.bridge_netns, "link", "set", "br0", "up")
            hosts_addresses = iter(net.hosts())
            next(hosts_addresses)  # .1 stays unused (no gateway: the subnet routes nowhere)
            for index, name in enumerate(names):
                netns = f"fwc-{tag}-{index}"
                address = str(next(hosts_addresses))
                _ip("netns", "add", netns)
                cluster.hosts[name] = Host(name=name, netns=netns, address=address)
                port = f"v{index}"
                # Both ends are born in namespaces: the bridge end in the bridge's, eth0 in the host's.
                _ip("-n", cluster.bridge_netns, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                    "netns", netns)
                _ip("-n", cluster.bridge_netns, "link", "set", port, "master", "br0")
                _ip("-n", cluster.bridge_netns, "link", "set", port, "up")
                _ip("-n", netns, "addr", "add", f"{address}/{net.prefixlen}", "dev", "eth0")
                _ip("-n", netns, "link", "set", "eth0", "up")
                _ip("-n", netns, "link", "set", "lo", "up")
            assert_isolated(subnet)  # after: still nothing in the root namespace
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def destroy(self) -> None:
        for host in self.hosts.values():
            _ip("netns", "del", host.netns, check=False)
        if self.bridge_netns:
            _ip("netns", "del", self.bridge_netns, check=False)
        self.hosts.clear()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def assert_isolated(subnet: str) -> None:
    """Fail unless the root namespace has no address and no route in ``subnet``.

    A packet to a test address must never leave through the machine's own interfaces: with no
    route and no address here, nothing in the root namespace can reach or forward the subnet.
    """
    net = ipaddress.ip_network(subnet)
    addresses = json.loads(_ip("-j", "addr", "show").stdout or "[]")
    for link in addresses:
        for info in link.get("addr_info", []):
            local = info.get("local")
            if local and info.get("family") == "inet" and ipaddress.ip_address(local) in net:
                raise AssertionError(f"root namespace has {local} on {link.get('ifname')}: inside test subnet {subnet}")
    for route in json.loads(_ip("-j", "route", "show").stdout or "[]"):
        dst = route.get("dst")
        if dst and dst != "default" and ipaddress.ip_network(dst, strict=False).overlaps(net):
            raise AssertionError(f"root namespace routes {dst} via {route.get('dev')}: overlaps test subnet {subnet}")
