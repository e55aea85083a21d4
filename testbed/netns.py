"""Network-namespace plumbing for the real test bed (issue 7).

Builds the project's own test hosts on this machine, never touching the host's real interfaces or
routes:

- one network namespace per host, named ``p2pa-<pid>-hNN`` (the pid of the run makes names unique,
  so parallel runs and leftovers never clash), plus one switch namespace ``p2pa-<pid>-sw``;
- one veth pair per host, created *inside* the switch namespace with its peer placed directly in the
  host namespace (``eth0`` there, ``pNN`` in the switch namespace), so nothing ever appears in the
  root namespace;
- addresses from ``10.213.<run>.0/24`` assigned only inside the host namespaces, with no default
  route: traffic cannot leave the namespaces;
- link shaping (delay, jitter, loss), one of two ways, chosen by probing the kernel:

  * ``netem``: the ports are enslaved to a Linux bridge in the switch namespace and each host's
    ``eth0`` gets ``tc qdisc ... netem`` on egress (so every frame is shaped once, by its sender);
  * ``wire``: when the kernel has no ``sch_netem`` (``CONFIG_NET_SCH_NETEM`` unset, as on the
    machine this was written on), a small userspace switch (:func:`wire_main`) runs in the switch
    namespace. It reads every port with an ``AF_PACKET`` socket (``PACKET_VNET_HDR``, so checksum
    offload and GSO frames pass through untouched), learns MAC addresses like a bridge and forwards
    each frame after the same netem-style delay (uniform jitter) or drops it with the loss
    probability, once per frame.

- partitions with iproute2 alone: ``blackhole`` routes, inside each host namespace, to every
  address of the other group (both directions, so the cut is symmetric); healing deletes them.

Processes are started with ``ip netns exec NS ...`` (which execs, so the pid we hold is the real
process and ``kill -9`` hits it). Teardown kills every process left in the run's namespaces and
deletes the namespaces; :func:`cleanup_leftovers` removes namespaces of runs whose pid is dead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from p2pauction.errors import UsageError

PREFIX = "p2pa-"
NS_RE = re.compile(r"^p2pa-(\d+)-")
NETNS_DIR = Path("/var/run/netns")
HOST_IFACE = "eth0"
CMD_TIMEOUT = 30.0

# AF_PACKET constants (linux/if_packet.h, linux/if_ether.h)
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
VNET_HDR_LEN = 10
PACKET_OUTGOING = 4
MAX_FRAME = 65536 + VNET_HDR_LEN + 64


class NetnsError(UsageError):
    """The machine cannot build the test bed, or an iproute2 command failed; the message says which."""


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """Netem-style shaping of every host's link: one-way delay, uniform jitter, loss fraction."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0

    @property
    def is_clean(self) -> bool:
        return self.delay_ms == 0 and self.jitter_ms == 0 and self.loss == 0

    def to_json(self) -> dict[str, float]:
        return {"delay_ms": self.delay_ms, "jitter_ms": self.jitter_ms, "loss": self.loss}


@dataclass(frozen=True, slots=True)
class Host:
    """One emulated machine: its namespace, its switch port and its address."""

    index: int
    name: str
    ns: str
    port: str
    addr: str


def run_cmd(argv: Sequence[str], *, check: bool = True, timeout: float = CMD_TIMEOUT,
            stdin: str | None = None) -> str:
    """Run a short admin command; raise NetnsError with its stderr when it fails."""
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                             input=stdin)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from exc
    if check and res.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def probe_netns() -> str | None:
    """None when this machine can build namespaces, else the reason (for pytest.skip).

    Probes by actually creating and deleting a namespace: being root is not enough in containers.
    """
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "building network namespaces needs root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    name = f"{PREFIX}{os.getpid()}-probe"
    try:
        run_cmd(["ip", "netns", "add", name])
        run_cmd(["ip", "-n", name, "link", "set", "lo", "up"])
    except NetnsError as exc:
        return f"cannot create a network namespace: {exc}"
    finally:
        run_cmd(["ip", "netns", "del", name], check=False)
    return None


def netem_available(ns: str) -> bool:
    """Whether the kernel has sch_netem: try it on a throwaway dummy-free veth inside `ns`."""
    if shutil.which("tc") is None:
        return False
    try:
        run_cmd(["ip", "-n", ns, "link", "add", "nprobe0", "type", "veth", "peer", "name", "nprobe1"])
    except NetnsError:
        return False
    try:
        run_cmd(["tc", "-n", ns, "qdisc", "add", "dev", "nprobe0", "root", "netem", "delay", "1ms"])
        return True
    except NetnsError:
        return False
    finally:
        run_cmd(["ip", "-n", ns, "link", "del", "nprobe0"], check=False)


def list_namespaces() -> list[str]:
    out = run_cmd(["ip", "netns", "list"], check=False)
    return sorted(line.split()[0] for line in out.splitlines() if line.strip())


def kill_namespace(ns: str) -> None:
    """SIGKILL every process still inside `ns`, then delete it (idempotent)."""
    out = run_cmd(["ip", "netns", "pids", ns], check=False)
    for token in out.split():
        try:
            os.kill(int(token), signal.SIGKILL)
        except (ValueError, ProcessLookupError, PermissionError):
            pass
    run_cmd(["ip", "netns", "del", ns], check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_leftovers(*, force: bool = False) -> list[str]:
    """Delete namespaces left by runs whose process is gone (all ``p2pa-*`` ones with `force`)."""
    removed = []
    for ns in list_namespaces():
        m = NS_RE.match(ns)
        if m is None:
            continue
        pid = int(m.group(1))
        if force or (pid != os.getpid() and not _pid_alive(pid)):
            kill_namespace(ns)
            removed.append(ns)
    return removed


@dataclass
class Testbed:
    """N hosts on one emulated LAN. Use as a context manager: teardown is guaranteed on exit."""

    __test__ = False  # not a pytest class, despite the name

    n_hosts: int
    seed: int = 0
    shaper: str = "auto"  # "auto" | "netem" | "wire"
    run_id: int = field(default_factory=os.getpid)
    hosts: list[Host] = field(default_factory=list)
    switch_ns: str = ""
    mode: str = ""
    profile: LinkProfile = field(default_factory=LinkProfile)
    partitioned: bool = False
    _blackholes: list[tuple[str, list[str]]] = field(default_factory=list)
    _wire: subprocess.Popen[str] | None = None
    _namespaces: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"{PREFIX}{self.run_id}"

    @property
    def subnet_octet(self) -> int:
        # The subnet only exists inside this run's namespaces, so clashes are harmless; varying it
        # still makes captures of parallel runs easy to tell apart.
        return self.run_id % 250 + 1

    def __enter__(self) -> Testbed:
        try:
            self.up()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def up(self) -> None:
        if not 1 <= self.n_hosts <= 200:
            raise NetnsError(f"n_hosts must be 1..200, got {self.n_hosts}")
        self.switch_ns = self._add_ns(f"{self.prefix}-sw")
        self.mode = self._choose_mode()
        if self.mode == "netem":
            run_cmd(["ip", "-n", self.switch_ns, "link", "add", "br0", "type", "bridge"])
            run_cmd(["ip", "-n", self.switch_ns, "link", "set", "br0", "up"])
        for i in range(1, self.n_hosts + 1):
            self.hosts.append(self._add_host(i))
        if self.mode == "wire":
            self._start_wire()

    def _choose_mode(self) -> str:
        if self.shaper not in ("auto", "netem", "wire"):
            raise NetnsError(f"unknown shaper {self.shaper!r}; use auto, netem or wire")
        has_netem = netem_available(self.switch_ns)
        if self.shaper == "netem" and not has_netem:
            raise NetnsError("this kernel has no sch_netem (CONFIG_NET_SCH_NETEM); use --shaper wire")
        if self.shaper == "auto":
            return "netem" if has_netem else "wire"
        return self.shaper

    def _add_ns(self, name: str) -> str:
        run_cmd(["ip", "netns", "add", name])
        self._namespaces.append(name)
        run_cmd(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def _add_host(self, i: int) -> Host:
        host = Host(index=i, name=f"h{i:02d}", ns=f"{self.prefix}-h{i:02d}", port=f"p{i:02d}",
                    addr=f"10.213.{self.subnet_octet}.{i}")
        self._add_ns(host.ns)
        # IPv6 would only add router solicitations and DAD chatter to the emulated wire.
        run_cmd(["ip", "netns", "exec", host.ns, "sysctl", "-qw",
                 "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"],
                check=False)
        sw = ["ip", "-n", self.switch_ns]
        run_cmd([*sw, "link", "add", host.port, "type", "veth", "peer", "name", HOST_IFACE,
                 "netns", host.ns])
        if self.mode == "netem":
            run_cmd([*sw, "link", "set", host.port, "master", "br0"])
        run_cmd([*sw, "link", "set", host.port, "up"])
        hn = ["ip", "-n", host.ns]
        run_cmd([*hn, "addr", "add", f"{host.addr}/24", "dev", HOST_IFACE])
        run_cmd([*hn, "link", "set", HOST_IFACE, "up"])
        return host

    def _start_wire(self) -> None:
        argv = ["ip", "netns", "exec", self.switch_ns, sys.executable, "-m", "testbed.netns",
                "wire", "--seed", str(self.seed), "--ports", ",".join(h.port for h in self.hosts)]
        self._wire = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, bufsize=1,
                                      cwd=str(Path(__file__).resolve().parent.parent))
        ready = self._wire_request({"cmd": "stats"})
        if ready is None:
            err = self._wire.stderr.read() if self._wire.stderr else ""
            raise NetnsError(f"the userspace wire did not start: {err.strip()[-500:]}")

    def _wire_request(self, message: dict[str, object]) -> dict[str, object] | None:
        """One JSON line to the wire, one JSON line back (None if it died)."""
        wire = self._wire
        if wire is None or wire.stdin is None or wire.stdout is None or wire.poll() is not None:
            return None
        try:
            wire.stdin.write(json.dumps(message) + "\n")
            wire.stdin.flush()
            line = wire.stdout.readline()
        except (BrokenPipeError, OSError):
            return None
        return json.loads(line) if line else None

    def exec_argv(self, host: Host, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` inside `host`'s namespace."""
        return ["ip", "netns", "exec", host.ns, *argv]

    def set_profile(self, profile: LinkProfile) -> None:
        """Shape every host's link (a clean profile removes the shaping)."""
        if self.mode == "netem":
            for host in self.hosts:
                self._netem(host, profile)
        elif self._wire_request({"cmd": "profile", **profile.to_json()}) is None:
            raise NetnsError("the userspace wire is gone; cannot change the link profile")
        self.profile = profile

    def _netem(self, host: Host, profile: LinkProfile) -> None:
        tc = ["tc", "-n", host.ns, "qdisc"]
        if profile.is_clean:
            run_cmd([*tc, "del", "dev", HOST_IFACE, "root"], check=False)
            return
        run_cmd([*tc, "replace", "dev", HOST_IFACE, "root", "netem",
                 "delay", f"{profile.delay_ms}ms", f"{profile.jitter_ms}ms",
                 "loss", f"{profile.loss * 100}%"])

    def partition(self, group_a: Sequence[Host], group_b: Sequence[Host]) -> None:
        """Cut all traffic between the two groups, both ways, with blackhole routes."""
        for src_group, dst_group in ((group_a, group_b), (group_b, group_a)):
            for src in src_group:
                self._blackholes.append((src.ns, [dst.addr for dst in dst_group]))
                self._routes(src.ns, "add", self._blackholes[-1][1], check=True)
        self.partitioned = True

    def heal(self) -> None:
        """Remove every blackhole route added by :meth:`partition`."""
        while self._blackholes:
            ns, addrs = self._blackholes.pop()
            self._routes(ns, "del", addrs, check=False)
        self.partitioned = False

    @staticmethod
    def _routes(ns: str, verb: str, addrs: Sequence[str], *, check: bool) -> None:
        # One `ip -batch` per host: a 12-host partition is 12 commands, not 72.
        lines = "".join(f"route {verb} blackhole {addr}/32\n" for addr in addrs)
        run_cmd(["ip", "-n", ns, "-force", "-batch", "-"], stdin=lines, check=check)

    def wire_stats(self) -> dict[str, object]:
        return (self._wire_request({"cmd": "stats"}) or {}) if self.mode == "wire" else {}

    def teardown(self) -> None:
        """Stop the wire, kill every process left in the run's namespaces, delete them."""
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.kill()
            try:
                wire.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (wire.stdin, wire.stdout, wire.stderr):
                if stream is not None:
                    stream.close()
        for ns in reversed(self._namespaces):
            kill_namespace(ns)
        self._namespaces.clear()
        self._blackholes.clear()


# --------------------------------------------------------------------------------------------
# The userspace wire: a learning switch with netem-style delay, jitter and loss.


class Wire:
    """Forwards Ethernet frames between veth ports, delaying or dropping each one once."""

    def __init__(self, ports: Sequence[str], rng: random.Random) -> None:
        self.ports = list(ports)
        self.rng = rng
        self.profile = LinkProfile()
        self.socks: dict[str, socket.socket] = {}
        self.macs: dict[bytes, str] = {}
        self.counters = {"frames": 0, "forwarded": 0, "lost": 0, "send_errors": 0, "bytes": 0}

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        for port in self.ports:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            # With a virtio-net header the kernel hands us GSO super-frames and partial checksums
            # as they are, and finishes them when we send: no need to disable offloads.
            sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            sock.bind((port, 0))
            sock.setblocking(False)
            self.socks[port] = sock
            loop.add_reader(sock.fileno(), self._readable, loop, port)

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()

    def _readable(self, loop: asyncio.AbstractEventLoop, port: str) -> None:
        sock = self.socks[port]
        for _ in range(64):  # drain a burst, but let other ports and timers run
            try:
                data, addr = sock.recvfrom(MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.counters["send_errors"] += 1
                return
            if addr[2] == PACKET_OUTGOING or len(data) < VNET_HDR_LEN + 14:
                continue
            self._frame(loop, port, data)

    def _frame(self, loop: asyncio.AbstractEventLoop, port: str, data: bytes) -> None:
        self.counters["frames"] += 1
        self.counters["bytes"] += len(data) - VNET_HDR_LEN
        dst = data[VNET_HDR_LEN:VNET_HDR_LEN + 6]
        src = data[VNET_HDR_LEN + 6:VNET_HDR_LEN + 12]
        self.macs[src] = port
        prof = self.profile
        if prof.loss > 0 and self.rng.random() < prof.loss:
            self.counters["lost"] += 1
            return
        out = self.macs.get(dst) if not dst[0] & 1 else None
        outs = [out] if out is not None else [p for p in self.ports if p != port]
        delay = max(0.0, prof.delay_ms + self.rng.uniform(-prof.jitter_ms, prof.jitter_ms)) / 1000
        if delay <= 0:
            self._send(outs, data)
        else:
            loop.call_later(delay, self._send, outs, data)

    def _send(self, outs: list[str], data: bytes) -> None:
        for port in outs:
            sock = self.socks.get(port)
            if sock is None:
                continue
            try:
                sock.send(data)
                self.counters["forwarded"] += 1
            except OSError:
                # A full queue or a port that went down: the frame is lost, like on a real wire.
                self.counters["send_errors"] += 1

    def handle(self, request: dict[str, object]) -> dict[str, object]:
        if request.get("cmd") == "profile":
            self.profile = LinkProfile(
                delay_ms=float(request.get("delay_ms", 0.0)),  # type: ignore[arg-type]
                jitter_ms=float(request.get("jitter_ms", 0.0)),  # type: ignore[arg-type]
                loss=float(request.get("loss", 0.0)),  # type: ignore[arg-type]
            )
        return {"ok": True, "profile": self.profile.to_json(), **self.counters}


async def _wire_serve(ports: Sequence[str], seed: int) -> None:
    loop = asyncio.get_running_loop()
    wire = Wire(ports, random.Random(seed))
    wire.open(loop)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():  # EOF (parent gone) ends the wire
            try:
                request = json.loads(line)
            except json.JSONDecodeError:
                request = {}
            sys.stdout.write(json.dumps(wire.handle(request)) + "\n")
            sys.stdout.flush()
    finally:
        wire.close()


def wire_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the wire process (run inside the switch namespace)."""
    parser = argparse.ArgumentParser(prog="python -m testbed.netns wire")
    parser.add_argument("--ports", required=True, help="comma-separated switch-side veth names")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_wire_serve([p for p in args.ports.split(",") if p], args.seed))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["wire"]:
        return wire_main(args[1:])
    if args[:1] == ["cleanup"]:
        for ns in cleanup_leftovers(force="--force" in args):
            print(f"removed {ns}")
        return 0
    print("usage: python -m testbed.netns wire|cleanup [--force]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
