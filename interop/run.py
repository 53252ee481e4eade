#!/usr/bin/env python3
"""Interop tests: the Rust `discovery-swarm` CLI against Node discovery-swarm@6.1.0 (TCP only).

    interop/run [SCENARIO...]        # builds, then runs this file inside scripts/isolate

Scenarios: see SCENARIOS at the end (TCP, hostile input, DHT, mDNS pair and mesh, dns-discovery
servers). Prints `PASS name` or
`FAIL name: reason` per scenario (details on stderr) and ends with `N passed, M failed`.
Environment: SWARM_BIN overrides the command under test (default target/release/discovery-swarm);
SWARM_RUST_ARGS adds arguments to every Rust invocation; SWARM_INTEROP_LOGS sets the directory
where each scenario's child output is kept (default /tmp/swarm-interop-logs).
"""
import hashlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.dont_write_bytecode = True  # keep interop/ free of __pycache__
sys.path.insert(0, str(ROOT / "interop"))
import attack  # noqa: E402

PEER_JS = ROOT / "interop" / "node" / "peer.js"
BIN = shlex.split(os.environ["SWARM_BIN"]) if os.environ.get("SWARM_BIN") else [str(ROOT / "target" / "release" / "discovery-swarm")]
RUST_EXTRA = shlex.split(os.environ.get("SWARM_RUST_ARGS", ""))
LOGS = Path(os.environ.get("SWARM_INTEROP_LOGS", "/tmp/swarm-interop-logs"))
TOPIC = "interop"


class Fail(Exception):
    pass


def info(msg):
    print(f"  info: {msg}", file=sys.stderr, flush=True)


class Proc:
    """A child process; JSON lines from its `events` stream are collected by a reader thread.
    For the Rust CLI (events on stderr) stdout carries raw connection data, kept in `raw`."""

    def __init__(self, name, argv, events="stdout", stdin=False):
        self.name, self.argv, self.t0 = name, argv, time.monotonic()
        self.events, self.raw, self.other = [], bytearray(), []
        self.cond = threading.Condition()
        self.p = subprocess.Popen(argv, cwd=ROOT, start_new_session=True,
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ev, other = (self.p.stdout, self.p.stderr) if events == "stdout" else (self.p.stderr, self.p.stdout)
        self.threads = [threading.Thread(target=self._read_events, args=(ev,), daemon=True),
                        threading.Thread(target=self._read_raw if events == "stderr" else self._read_other,
                                         args=(other,), daemon=True)]
        for t in self.threads:
            t.start()

    def _read_events(self, f):
        for line in iter(f.readline, b""):
            try:
                e = json.loads(line)
                assert isinstance(e, dict) and "event" in e
            except (ValueError, AssertionError):
                with self.cond:
                    self.other.append(line.decode("utf8", "replace").rstrip("\n"))
                continue
            e["_at"] = time.monotonic()
            with self.cond:
                self.events.append(e)
                self.cond.notify_all()

    def _read_raw(self, f):
        while chunk := os.read(f.fileno(), 65536):
            with self.cond:
                self.raw += chunk
                self.cond.notify_all()

    def _read_other(self, f):
        for line in iter(f.readline, b""):
            with self.cond:
                self.other.append(line.decode("utf8", "replace").rstrip("\n"))

    def find(self, name, **fields):
        with self.cond:
            return [e for e in self.events if e["event"] == name and all(e.get(k) == v for k, v in fields.items())]

    def wait(self, cond, timeout):
        """Wait until cond(self) is truthy; return its value (None on timeout)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (r := cond(self)):
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None and not any(t.is_alive() for t in self.threads)):
                    return None
                self.cond.wait(min(left, 0.1))
            return r

    def wait_event(self, name, timeout, **fields):
        r = self.wait(lambda s: s.find(name, **fields), timeout)
        return r[0] if r else None

    def send(self, data):
        try:
            self.p.stdin.write(data)
            self.p.stdin.flush()
        except BrokenPipeError:
            raise Fail(f"{self.name}: stdin closed (exit code {self.p.poll()})")

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        if self.alive():
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(2)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
            except ProcessLookupError:
                pass
        for t in self.threads:
            t.join(1)

    def dump(self, d):
        with open(d / f"{self.name}.log", "w") as f:
            f.write(f"# {shlex.join(self.argv)}\n# exit code {self.p.returncode}\n")
            for e in self.events:
                f.write(json.dumps({"at": round(e["_at"] - self.t0, 3), **{k: v for k, v in e.items() if k != "_at"}})[:2000] + "\n")
            f.writelines(f"# {line}\n" for line in self.other)
            if self.raw:
                f.write(f"# raw stdout: {bytes(self.raw[:2000])!r}\n")


CHILDREN = []


def spawn_node(name, port, node_id, add_peer=None, dial_on_signal=False, dht=None, mdns=False,
               seconds=30, dns_server=None, extra=()):
    argv = ["node", str(PEER_JS), "--port", str(port), "--id", node_id, "--seconds", str(seconds)] + list(extra)
    if dht:
        argv += ["--topic", TOPIC, "--dht-bootstrap", f"127.0.0.1:{dht}"]
    if mdns:
        argv += ["--mdns"] + ([] if dht else ["--topic", TOPIC])
    if add_peer:
        argv += ["--add-peer", f"127.0.0.1:{add_peer}"] + (["--dial-on-signal"] if dial_on_signal else [])
    if dns_server:
        argv += ["--dns-server", f"127.0.0.1:{dns_server}"] + ([] if "--topic" in argv else ["--topic", TOPIC])
    CHILDREN.append(p := Proc(name, argv))
    return p


def spawn_rust(name, port, rust_id, peer=None, dht=None, mdns=False, dns_server=None, extra=()):
    argv = BIN + ["join", TOPIC, "--port", str(port), "--id", rust_id, "--json", "--pipe"] + RUST_EXTRA + list(extra)
    if not mdns:
        argv += ["--no-mdns"]
    if peer:
        argv += ["--peer", f"127.0.0.1:{peer}"]
    # Never the public routers (the CLI's default): a local bootstrap node or no DHT.
    argv += ["--dht-bootstrap", f"127.0.0.1:{dht}"] if dht else ["--no-dht"]
    if dns_server:
        argv += ["--dns-server", f"127.0.0.1:{dns_server}"]
    CHILDREN.append(p := Proc(name, argv, events="stderr", stdin=True))
    return p


def listening(proc, timeout=5):
    if not proc.wait_event("listening", timeout):
        raise Fail(f"{proc.name} never logged listening (exit code {proc.p.poll()})")


def node_final(node):
    """SIGTERM the Node peer and return its `final` record."""
    if not node.alive():
        raise Fail(f"node peer exited early with code {node.p.returncode}")
    node.p.send_signal(signal.SIGTERM)
    final = node.wait_event("final", 3)
    if not final:
        raise Fail("node peer logged no final record")
    return final


def rust_live(rust):
    """Rust connections that reached `connection` and have not logged `connection-closed`."""
    closed = {e.get("conn") for e in rust.find("connection-closed")}
    return [e for e in rust.find("connection") if e.get("conn") not in closed]


def state(node, rust):
    return (f"[rust: {len(rust_live(rust))} live, alive={rust.alive()}; node: "
            f"{len(node.find('connection'))} connection / {len(node.find('connection-closed'))} connection-closed events]")


def check_pair(node, rust, node_id, rust_id, t_start, min_run=6.0):
    """The Rust-Node pair assertions of PROTOCOLS.md 6.3 (TCP profile)."""
    nc = node.wait_event("connection", 6)
    rc = rust.wait_event("connection", 6)
    if not nc or not rc:
        raise Fail(f"no connection within 6 s (node: {bool(nc)}, rust: {bool(rc)}, rust exit code: {rust.p.poll()})")
    for e in node.find("connection"):
        if e["id"] != rust_id:
            raise Fail(f"node connection id {e['id']} != rust id {rust_id}")
    for e in rust.find("connection"):
        if e.get("id") != node_id:
            raise Fail(f"rust connection id {e.get('id')} != node id {node_id}")
    time.sleep(max(0.0, max(nc["_at"], rc["_at"]) + 2.0 - time.monotonic()))  # settle

    line = f"hello from rust {secrets.token_hex(4)}\n"
    rust.send(line.encode())
    if not node.wait(lambda s: line in "".join(e["data"] for e in s.find("data")), 3):
        raise Fail(f"line written to rust stdin never reached node {state(node, rust)}")
    want = f"hello from node {node_id}\n".encode()
    if not rust.wait(lambda s: want in s.raw, 3):
        raise Fail(f"node's line never appeared on rust stdout (got {bytes(rust.raw[:200])!r}) {state(node, rust)}")

    time.sleep(max(0.0, t_start + min_run - time.monotonic()))  # long enough for a 5 s handshake timeout
    if not rust.alive():
        raise Fail(f"rust exited with code {rust.p.returncode}")
    live = rust_live(rust)
    final = node_final(node)
    for who, proc, names in (("node", node, ("handshake-timeout", "uncaught")),
                             ("rust", rust, ("handshake-timeout", "handshake-failed"))):
        for n in names:
            if proc.find(n):
                raise Fail(f"{who} logged {n}: {proc.find(n)[0]}")
    if len(live) != 1:
        raise Fail(f"rust holds {len(live)} live connections after settling, want 1: {[e.get('conn') for e in live]}")
    if final["connected"] != 1 or len(final["conns"]) != 1:
        raise Fail(f"node holds connected={final['connected']} conns={final['conns']} after settling, want 1")
    r, n = live[0], final["conns"][0]
    if (r.get("local_port"), r.get("port")) != (n["remotePort"], n["localPort"]):
        raise Fail(f"sides kept different connections: rust local {r.get('local_port')} -> {r.get('port')}, "
                   f"node local {n['localPort']} -> {n['remotePort']}")
    return r


def scenario_rust_dials_node():
    node_id, rust_id = secrets.token_hex(32), secrets.token_hex(32)
    t = time.monotonic()
    node = spawn_node("node", 7101, node_id)
    listening(node)
    rust = spawn_rust("rust", 7102, rust_id, peer=7101)
    kept = check_pair(node, rust, node_id, rust_id, t)
    if not kept.get("initiator"):
        raise Fail("rust's kept connection is not marked initiator")


def scenario_node_dials_rust():
    node_id, rust_id = secrets.token_hex(32), secrets.token_hex(32)
    t = time.monotonic()
    rust = spawn_rust("rust", 7112, rust_id)
    listening(rust)
    node = spawn_node("node", 7111, node_id, add_peer=7112)
    kept = check_pair(node, rust, node_id, rust_id, t)
    if kept.get("initiator"):
        raise Fail("rust's kept connection is marked initiator, but node dialled")


def spawn_dht_node(port):
    CHILDREN.append(p := Proc("dht-node", ["node", str(PEER_JS.parent / "dht-node.js"), "--port", str(port)]))
    if not p.wait_event("listening", 5):
        raise Fail(f"the Node DHT bootstrap node never listened (exit code {p.p.poll()})")
    info(f"bootstrap node: bittorrent-dht {p.find('listening')[0].get('version')}")
    return p


def announced(dht_node, port, timeout):
    """Waits until the bootstrap node stored an announce of 127.0.0.1:port."""
    return dht_node.wait(lambda s: any(e.get("port") == port for e in s.find("announce")), timeout)


def scenario_dht_rust_finds_node():
    """Node announces through a Node DHT; Rust joins later, finds it in `values` and dials."""
    node_id, rust_id = secrets.token_hex(32), secrets.token_hex(32)
    dht_node = spawn_dht_node(7191)
    t = time.monotonic()
    node = spawn_node("node", 7201, node_id, dht=7191)
    listening(node)
    if not announced(dht_node, 7201, 5):
        raise Fail("node's announce never reached the bootstrap node")
    rust = spawn_rust("rust", 7202, rust_id, dht=7191)
    if not announced(dht_node, 7202, 5):
        raise Fail("the bootstrap node never stored rust's announce (explicit port 7202)")
    kept = check_pair(node, rust, node_id, rust_id, t)
    if not kept.get("initiator"):
        raise Fail("rust found node through the DHT but its kept connection is not its own dial")


def scenario_dht_node_finds_rust():
    """Rust announces through a Node DHT; Node joins later, finds Rust in `values` and dials."""
    node_id, rust_id = secrets.token_hex(32), secrets.token_hex(32)
    dht_node = spawn_dht_node(7192)
    t = time.monotonic()
    rust = spawn_rust("rust", 7212, rust_id, dht=7192)
    listening(rust)
    if not announced(dht_node, 7212, 5):
        raise Fail("the bootstrap node never stored rust's announce (explicit port 7212)")
    node = spawn_node("node", 7211, node_id, dht=7192)
    kept = check_pair(node, rust, node_id, rust_id, t)
    if kept.get("initiator"):
        raise Fail("node found rust through the DHT, but rust's kept connection is rust's own dial")


def scenario_dht_our_bootstrap():
    """Our `dht-node` is the only bootstrap node; two Node peers find each other through it."""
    CHILDREN.append(ours := Proc("rust-dht-node", BIN + ["dht-node", "--port", "7194"]))
    if not ours.wait_event("listening", 5):
        raise Fail(f"our dht-node never listened (exit code {ours.p.poll()})")
    a_id, b_id = secrets.token_hex(32), secrets.token_hex(32)
    a = spawn_node("node-a", 7241, a_id, dht=7194)
    listening(a)
    if not a.wait_event("joined", 5):
        raise Fail("node-a's first DHT round never completed against our dht-node")
    b = spawn_node("node-b", 7242, b_id, dht=7194)
    if not b.wait_event("connection", 8) or not a.wait_event("connection", 2):
        raise Fail("the two Node peers did not connect through our dht-node")
    ids = {e["id"] for e in b.find("connection")} | {e["id"] for e in a.find("connection")}
    if ids != {a_id, b_id}:
        raise Fail(f"unexpected connection ids {ids}")
    if not ours.alive():
        raise Fail(f"our dht-node exited with {ours.p.returncode}")
    info("two Node peers found each other through our dht-node")


def mesh_snapshot(nodes, rusts):
    """Live connections as (local port, remote port) per peer: Node's by SIGUSR1 `state`,
    Rust's from its events. Returns {name: set of (local, remote)}."""
    snap = {}
    for node in nodes:
        before = len(node.find("state"))
        node.p.send_signal(signal.SIGUSR1)
        if not node.wait(lambda s, b=before: len(s.find("state")) > b, 3):
            raise Fail(f"{node.name} gave no state")
        snap[node.name] = {(c["localPort"], c["remotePort"]) for c in node.find("state")[-1]["conns"]}
    for rust in rusts:
        snap[rust.name] = {(e.get("local_port"), e.get("port")) for e in rust_live(rust)}
    return snap


def mesh_problems(snap, listen_ports):
    """Full mesh, one connection per pair, the same one at both ends."""
    problems = []
    peers = list(snap)
    ends = {}  # (local, remote) -> peer
    for name, conns in snap.items():
        for c in conns:
            ends[c] = name
    for name, conns in snap.items():
        if len(conns) != len(peers) - 1:
            problems.append(f"{name} holds {len(conns)} connections, want {len(peers) - 1}")
        for local, remote in conns:
            other = ends.get((remote, local))
            if other is None:
                problems.append(f"{name} {local}->{remote} has no matching end")
    return problems


def scenario_mdns_mesh():
    """3 Node + 3 Rust peers on one LAN reach a full mesh by mDNS, one connection per pair,
    the same at both ends, and keep it through Node's redials for INTEROP_SOAK_SECS (default
    180) without any connection made by a Rust dial after the mesh formed."""
    soak = float(os.environ.get("INTEROP_SOAK_SECS", "180"))
    life = soak + 60
    nodes = [spawn_node(f"node{i}", 7251 + i, secrets.token_hex(32), mdns=True, seconds=life)
             for i in range(3)]
    rusts = [spawn_rust(f"rust{i}", 7261 + i, secrets.token_hex(32), mdns=True) for i in range(3)]
    for p in nodes + rusts:
        listening(p)
    deadline = time.monotonic() + 20
    while True:
        problems = mesh_problems(mesh_snapshot(nodes, rusts), None)
        if not problems:
            break
        if time.monotonic() > deadline:
            raise Fail("no full mesh within 20 s: " + "; ".join(problems[:4]))
        time.sleep(1)
    formed = time.monotonic()
    info(f"full mesh of 6 formed; soaking {soak:.0f} s through Node's redials")
    own_dials_at_start = {r.name: sum(1 for e in r.find("connection") if e.get("initiator")) for r in rusts}
    time.sleep(soak)
    for p in nodes + rusts:
        if not p.alive():
            raise Fail(f"{p.name} exited during the soak")
    for r in rusts:
        late = sum(1 for e in r.find("connection") if e.get("initiator")) - own_dials_at_start[r.name]
        if late:
            raise Fail(f"{r.name} made {late} connection(s) by its own dials after the mesh formed")
        for n in ("handshake-timeout", "handshake-failed"):
            if r.find(n):
                raise Fail(f"{r.name} logged {n}")
    # Node may be replacing a connection at any instant: accept the first consistent sample.
    for attempt in range(5):
        problems = mesh_problems(mesh_snapshot(nodes, rusts), None)
        if not problems:
            break
        time.sleep(1)
    else:
        raise Fail("mesh not intact after the soak: " + "; ".join(problems[:4]))
    redials = sum(len(n.find("redundant-connection")) for n in nodes)
    info(f"mesh intact after {time.monotonic() - formed:.0f} s; Node logged {redials} redundant connections (its redials)")


def scenario_mdns_pair():
    """Node and Rust on one LAN find each other by multicast DNS alone, in both join orders,
    and keep one connection, the same at both ends."""
    for rust_first in (False, True):
        node_id, rust_id = secrets.token_hex(32), secrets.token_hex(32)
        node_port, rust_port = (7221, 7222) if not rust_first else (7231, 7232)
        t = time.monotonic()
        if rust_first:
            rust = spawn_rust("rust", rust_port, rust_id, mdns=True)
            listening(rust)
            node = spawn_node("node", node_port, node_id, mdns=True)
        else:
            node = spawn_node("node", node_port, node_id, mdns=True)
            listening(node)
            rust = spawn_rust("rust", rust_port, rust_id, mdns=True)
        check_pair(node, rust, node_id, rust_id, t)
        found = [e for e in rust.find("peer") if e.get("port") == node_port]
        if not found:
            raise Fail("rust never reported the node peer as found (by mDNS)")
        info(f"mdns ({'rust' if rust_first else 'node'} first): found each other, one connection kept")
        for proc in (node, rust):
            proc.stop()


def scenario_mdns_known_answers():
    """Node reads a query carrying our known-answer list (the bytes swarm-core's
    `listing_query_golden_bytes` pins) and ignores the list: it decodes the query, takes no peer
    from it and still answers it."""
    script = ROOT / "interop" / "node" / "known-answers.js"
    out = subprocess.run(["node", str(script)], cwd=script.parent, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise Fail(f"Node mishandled our listing query: {out.stdout.strip()} {out.stderr.strip()}")
    info(f"Node decoded the listing query, took no peer from it and answered: {out.stdout.strip()}")


def ordered_ids(rust_smaller):
    while True:
        a, b = secrets.token_hex(32), secrets.token_hex(32)
        if (a < b) == rust_smaller:
            return a, b  # rust, node


def scenario_crossed():
    """Both sides dial each other at the same moment; 5 rounds, id order alternating."""
    for i in range(5):
        rust_smaller = i % 2 == 0
        rust_id, node_id = ordered_ids(rust_smaller)
        np_, rp = 7121 + 10 * i, 7122 + 10 * i
        t = time.monotonic()
        node = spawn_node(f"node{i}", np_, node_id, add_peer=rp, dial_on_signal=True)
        listening(node)
        rust = spawn_rust(f"rust{i}", rp, rust_id, peer=np_)
        listening(rust)
        node.p.send_signal(signal.SIGUSR2)  # rust dials right after listening: node dials now too
        try:
            kept = check_pair(node, rust, node_id, rust_id, t)
        except Fail as e:
            raise Fail(f"round {i + 1} ({'rust' if rust_smaller else 'node'} id smaller): {e}")
        dialled = [bool(p.find("handshaking", initiator=True)) for p in (rust, node)]
        info(f"round {i + 1}: {'rust' if rust_smaller else 'node'} id smaller; handshaking outbound "
             f"rust={dialled[0]} node={dialled[1]}; kept connection initiated by "
             f"{'rust' if kept.get('initiator') else 'node'}")
        if all(dialled) and bool(kept.get("initiator")) != rust_smaller:
            raise Fail(f"round {i + 1}: kept connection was not initiated by the smaller id")
        for p in (node, rust):
            p.stop()


def scenario_hostile_input():
    rust_id = secrets.token_hex(32)
    rust = spawn_rust("rust", 7171, rust_id)
    listening(rust)
    res = attack.run_attacks(7171, wait=7.5, expect_id=rust_id)
    for r in res.values():
        info(f"attack {r['attack']:9}: closed={r['closed']} after {r['closed_after_ms']} ms, "
             f"received {r['received']} bytes, rust handshake first: {r['sent_handshake']}"
             + (f", error: {r['error']}" if r["error"] else ""))
    if not rust.alive():
        raise Fail(f"rust died under attack (exit code {rust.p.returncode})")
    problems = []
    for name in ("zero", "big"):
        r = res[name]
        if r["closed"] not in ("fin", "rst") or r["closed_after_ms"] >= 1000:
            problems.append(f"{name}-length prefix not closed within 1 s ({r['closed']}, {r['closed_after_ms']} ms)")
    for name in ("truncated", "silent"):
        r = res[name]
        if r["closed"] not in ("fin", "rst") or not 4500 <= r["closed_after_ms"] <= 7000:
            problems.append(f"{name} connection not closed at the 5 s handshake timeout "
                            f"({r['closed']}, {r['closed_after_ms']} ms)")
        if not r["sent_handshake"]:
            problems.append(f"rust did not send its handshake on the {name} connection")
    for name in ("zero", "big", "truncated", "silent"):
        port = res[name]["local_port"]
        got = rust.wait(lambda s: s.find("handshake-failed", port=port) + s.find("handshake-timeout", port=port), 1)
        if not got:
            problems.append(f"rust logged no handshake-failed/handshake-timeout for the {name} connection")
        else:
            info(f"rust on {name}: {got[0]['event']} {got[0].get('error', '')}")
    # still serving: a Node peer connects afterwards
    node_id = secrets.token_hex(32)
    node = spawn_node("node", 7172, node_id, add_peer=7171)
    c = node.wait_event("connection", 5)
    if not c or c["id"] != rust_id:
        problems.append(f"node could not connect to rust after the attacks ({c})")
    elif not rust.wait_event("connection", 3, id=node_id):
        problems.append("rust logged no connection for the node peer after the attacks")

    # information only: the same 2^31 prefix against a Node peer
    victim = spawn_node("node-victim", 7181, secrets.token_hex(32))
    listening(victim)
    attack.run_attacks(7181, only=["big"], wait=2)
    victim.wait(lambda s: not s.alive(), 2)
    u = victim.find("uncaught")
    info("node peer vs 2^31 length prefix: " + (f"CRASHED (exit {victim.p.returncode}): {u[0]['error'].splitlines()[0]}"
                                                 if u or not victim.alive() else "survived"))
    if problems:
        raise Fail("; ".join(problems))


def spawn_node_dns_server(port):
    CHILDREN.append(p := Proc("node-dns-server", ["node", str(PEER_JS.parent / "dns-server.js"), "--port", str(port)]))
    if not p.wait_event("listening", 5):
        raise Fail(f"the Node dns-discovery server never listened (exit code {p.p.poll()})")
    info(f"server: dns-discovery {p.find('listening')[0].get('version')}")
    return p


def spawn_our_dns_server(port):
    argv = BIN + ["dns-server", "--port", str(port), "--host", "127.0.0.1", "--stats-interval", "0"]
    CHILDREN.append(p := Proc("rust-dns-server", argv))
    if not p.wait_event("listening", 5):
        raise Fail(f"our dns-server never listened (exit code {p.p.poll()})")
    return p


def server_stored(server, port, timeout):
    """Waits until the Node server logged an announce of 127.0.0.1:port."""
    return server.wait(lambda s: any(e.get("port") == port for e in s.find("announce")), timeout)


def scenario_dns_rust_client_node_server():
    """Node and Rust peers, multicast off, find each other only through a Node dns-discovery
    6.2.3 server: Rust probes, announces with a token and gets the Node peer listed or pushed."""
    server = spawn_node_dns_server(7301)
    node_id, rust_id = secrets.token_hex(32), secrets.token_hex(32)
    t = time.monotonic()
    node = spawn_node("node", 7302, node_id, dns_server=7301)
    listening(node)
    if not server_stored(server, 7302, 5):
        raise Fail("the Node server never stored the Node peer's announce")
    rust = spawn_rust("rust", 7303, rust_id, dns_server=7301)
    if not server_stored(server, 7303, 5):
        raise Fail("the Node server never accepted rust's announce (token, TXT format)")
    check_pair(node, rust, node_id, rust_id, t)
    if not [e for e in rust.find("peer") if e.get("port") == 7302]:
        raise Fail("rust never reported the node peer as found")
    info("rust announced to and found through the Node server")


def scenario_dns_push_to_rust():
    """Rust announces first through a Node dns-discovery server; when a Node peer announces
    later, the server pushes it to Rust (SRV, within seconds: the next round is 60-70 s away)."""
    server = spawn_node_dns_server(7321)
    node_id, rust_id = secrets.token_hex(32), secrets.token_hex(32)
    rust = spawn_rust("rust", 7323, rust_id, dns_server=7321)
    listening(rust)
    if not server_stored(server, 7323, 5):
        raise Fail("the Node server never stored rust's announce")
    node = spawn_node("node", 7322, node_id, dns_server=7321)
    listening(node)
    if not rust.wait(lambda s: [e for e in s.find("peer") if e.get("port") == 7322], 5):
        raise Fail("rust was not told about the node peer by a push")
    info("the Node server's SRV push reached rust")


def scenario_dns_node_clients_our_server():
    """Two Node discovery-swarm peers (`dns: {servers}`, multicast off) find each other only
    through our `dns-server`; then a Rust peer joins them through it too."""
    ours = spawn_our_dns_server(7311)
    a_id, b_id = secrets.token_hex(32), secrets.token_hex(32)
    a = spawn_node("node-a", 7312, a_id, dns_server=7311)
    listening(a)
    if not a.wait_event("joined", 10):
        raise Fail("node-a's first DNS round never completed against our server")
    b = spawn_node("node-b", 7313, b_id, dns_server=7311)
    if not b.wait_event("connection", 10) or not a.wait_event("connection", 3):
        raise Fail("the two Node peers did not connect through our dns-server")
    ids = {e["id"] for e in b.find("connection")} | {e["id"] for e in a.find("connection")}
    if ids != {a_id, b_id}:
        raise Fail(f"unexpected connection ids {ids}")
    rust_id = secrets.token_hex(32)
    rust = spawn_rust("rust", 7314, rust_id, dns_server=7311)
    found = rust.wait(lambda s: {e.get("id") for e in s.find("connection")} >= {a_id, b_id}, 10)
    if not found:
        raise Fail(f"rust did not connect to both Node peers through our server: {rust.find('connection')}")
    if not ours.alive():
        raise Fail(f"our dns-server exited with {ours.p.returncode}")
    info("two Node peers and a Rust peer found each other through our dns-server")


UTP_MIB = int(os.environ.get("INTEROP_UTP_MIB", "64"))


def utp_bulk(node, rust, node_id, rust_id):
    """A uTP-only pair (libutp in utp-native against ours): the handshake, then UTP_MIB MiB each
    way with SHA-256 checks, each side half-closing after its data."""
    nc = node.wait_event("connection", 10)
    rc = rust.wait_event("connection", 10)
    if not nc or not rc:
        raise Fail(f"no uTP connection within 10 s (node: {bool(nc)}, rust: {bool(rc)})")
    if nc["type"] != "utp" or rc.get("type") != "utp":
        raise Fail(f"connection types node={nc['type']} rust={rc.get('type')}, want utp")
    if nc["id"] != rust_id or rc.get("id") != node_id:
        raise Fail("ids exchanged over uTP do not match")
    payload = secrets.token_bytes(UTP_MIB << 20)
    want = hashlib.sha256(payload).hexdigest()
    t0 = time.monotonic()
    writer = threading.Thread(target=lambda: (rust.send(payload), rust.p.stdin.close()), daemon=True)
    writer.start()
    limit = 30 + UTP_MIB * 2
    got = node.wait_event("received", limit)
    if not got:
        raise Fail(f"node did not receive our {UTP_MIB} MiB and FIN within {limit} s")
    if (got["bytes"], got["sha256"]) != (UTP_MIB << 20, want):
        raise Fail(f"node received {got['bytes']} bytes with a different SHA-256 "
                   f"(rust had received {len(rust.raw)} of node's bytes)")
    sent = node.wait_event("sent", 5)
    if not rust.wait(lambda s: len(s.raw) >= UTP_MIB << 20, limit):
        raise Fail(f"rust received {len(rust.raw)} of node's {UTP_MIB << 20} bytes")
    if hashlib.sha256(bytes(rust.raw)).hexdigest() != sent["sha256"]:
        raise Fail("node's data arrived at rust with a different SHA-256")
    info(f"{UTP_MIB} MiB each way over uTP in {time.monotonic() - t0:.1f} s, SHA-256 equal")
    for n in ("conn-error", "handshake-timeout", "uncaught"):
        if node.find(n):
            raise Fail(f"node logged {n}: {node.find(n)[0]}")
    for n in ("handshake-timeout", "handshake-failed"):
        if rust.find(n):
            raise Fail(f"rust logged {n}: {rust.find(n)[0]}")


def scenario_utp_rust_dials_node():
    node_id, rust_id = secrets.token_hex(32), secrets.token_hex(32)
    node = spawn_node("node", 7301, node_id, seconds=300, extra=["--utp", "--no-tcp", "--bulk-mib", str(UTP_MIB)])
    listening(node)
    rust = spawn_rust("rust", 7302, rust_id, peer=7301, extra=["--no-tcp"])
    utp_bulk(node, rust, node_id, rust_id)


def scenario_utp_node_dials_rust():
    node_id, rust_id = secrets.token_hex(32), secrets.token_hex(32)
    rust = spawn_rust("rust", 7312, rust_id, extra=["--no-tcp"])
    listening(rust)
    node = spawn_node("node", 7311, node_id, add_peer=7312, seconds=300,
                      extra=["--utp", "--no-tcp", "--bulk-mib", str(UTP_MIB)])
    utp_bulk(node, rust, node_id, rust_id)


def scenario_utp_idle():
    """A uTP connection between libutp and ours left idle stays up (keep-alives), and still
    carries data afterwards. INTEROP_UTP_IDLE_SECS (default 60; the issue's 600 by hand)."""
    idle = float(os.environ.get("INTEROP_UTP_IDLE_SECS", "60"))
    node_id, rust_id = secrets.token_hex(32), secrets.token_hex(32)
    node = spawn_node("node", 7321, node_id, seconds=idle + 60, extra=["--utp", "--no-tcp"])
    listening(node)
    rust = spawn_rust("rust", 7322, rust_id, peer=7321, extra=["--no-tcp"])
    if not node.wait_event("connection", 10) or not rust.wait_event("connection", 10):
        raise Fail("no uTP connection within 10 s")
    time.sleep(idle)
    line = f"after {idle:.0f} s idle {secrets.token_hex(4)}\n"
    rust.send(line.encode())
    if not node.wait(lambda s: line in "".join(e["data"] for e in s.find("data")), 5):
        raise Fail(f"after {idle:.0f} s idle our line never reached node")
    for who, proc in (("node", node), ("rust", rust)):
        if proc.find("connection-closed"):
            raise Fail(f"{who} logged connection-closed while idle: {proc.find('connection-closed')[0]}")
    for n in ("conn-error", "handshake-timeout", "uncaught"):
        if node.find(n):
            raise Fail(f"node logged {n}: {node.find(n)[0]}")
    info(f"uTP connection idle {idle:.0f} s, still up and carrying data")


def scenario_dht_mixed_network():
    """20 Node DHT nodes (bittorrent-dht 7.10, one process) and 5 of our peers form one network;
    all 25 announce 3 topics; every peer finds every topic, ours find every announcer, and
    Node's find every one of ours."""
    topics = ["dht-mesh-a", "dht-mesh-b", "dht-mesh-c"]
    node_count, base, announce_base = 20, 7400, 7500
    CHILDREN.append(nodes := Proc("node-dht-swarm", [
        "node", str(PEER_JS.parent / "dht-swarm.js"), "--count", str(node_count), "--base-port", str(base),
        "--announce-base", str(announce_base), "--topics", ",".join(topics), "--every", "2000",
        # Each Node node on its own address, as on the real network: on one shared address
        # they would count as one host against our per-IP query rate and contact limits.
        "--spread-ips"]))
    if not nodes.wait_event("listening", 5):
        raise Fail(f"the Node DHT nodes never listened (exit code {nodes.p.poll()})")
    rust_ports = list(range(7431, 7436))
    rusts = []
    for i, port in enumerate(rust_ports):
        argv = BIN + ["join", *topics, "--port", str(port), "--id", f"{0xd0 + i:02x}" * 32, "--json", "--no-mdns",
                      "--dht-bootstrap", f"127.1.0.1:{base}", "--dht-interval", "2"] + RUST_EXTRA
        CHILDREN.append(p := Proc(f"rust-{i}", argv))
        rusts.append(p)
    for p in rusts:
        listening(p)
    expected = set(range(announce_base, announce_base + node_count)) | set(rust_ports)

    node_ports = set(range(announce_base, announce_base + node_count))

    def node_found(i, t):
        found = set()
        for e in nodes.find("found", node=i, topic=t):
            found |= set(e["ports"])
        return found

    def missing():
        """What is still unfound: every Node node must find every one of our announcers and
        some Node announcer of each topic; each of ours must find every announcer, Node's and
        ours. (Whether Node's nodes find all of each other is bittorrent-dht's business: it
        is reported, not required.)"""
        gaps = []
        for i in range(node_count):
            for t in topics:
                found = node_found(i, t)
                lost = set(rust_ports) - found
                if not (found & (node_ports - {announce_base + i})):
                    lost.add("any Node announcer")
                if lost:
                    gaps.append(f"node {i} / {t}: {sorted(map(str, lost))}")
        for p, port in zip(rusts, rust_ports):
            for t in topics:
                # An address already queued or connected for another topic is reported as
                # `peer-rejected` (duplicate) for this one: we never dial it twice (Node would).
                found = {e.get("port") for e in p.find("peer", topic=t.encode().hex())}
                found |= {e.get("port") for e in p.find("peer-rejected", topic=t.encode().hex(), reason="duplicate")}
                if lost := expected - {port} - found:
                    gaps.append(f"{p.name} / {t}: {sorted(lost)}")
        return gaps

    t0 = time.monotonic()
    deadline = t0 + 60
    while (gaps := missing()) and time.monotonic() < deadline:
        time.sleep(0.5)
    if gaps:
        raise Fail(f"{len(gaps)} (peer, topic) pairs incomplete after 60 s, e.g. {gaps[:4]}")
    for p in rusts:
        if not p.alive():
            raise Fail(f"{p.name} exited with {p.p.returncode}")
    node_node = sum(len(node_found(i, t) & (node_ports - {announce_base + i}))
                    for i in range(node_count) for t in topics)
    info(f"our {len(rusts)} peers found all {len(expected)} announcers of {len(topics)} topics and every Node node"
         f" found all of ours, in {time.monotonic() - t0:.1f} s; Node nodes found {node_node} of"
         f" {node_count * (node_count - 1) * len(topics)} (node, Node announcer, topic) triples")


SCENARIOS = {
    "rust-dials-node": scenario_rust_dials_node,
    "node-dials-rust": scenario_node_dials_rust,
    "crossed": scenario_crossed,
    "hostile-input": scenario_hostile_input,
    "dht-rust-finds-node": scenario_dht_rust_finds_node,
    "dht-node-finds-rust": scenario_dht_node_finds_rust,
    "mdns-pair": scenario_mdns_pair,
    "dht-our-bootstrap": scenario_dht_our_bootstrap,
    "dht-mixed-network": scenario_dht_mixed_network,
    "mdns-mesh": scenario_mdns_mesh,
    "mdns-known-answers": scenario_mdns_known_answers,
    "dns-rust-client-node-server": scenario_dns_rust_client_node_server,
    "dns-node-clients-our-server": scenario_dns_node_clients_our_server,
    "dns-push-to-rust": scenario_dns_push_to_rust,
    "utp-rust-dials-node": scenario_utp_rust_dials_node,
    "utp-node-dials-rust": scenario_utp_node_dials_rust,
    "utp-idle": scenario_utp_idle,
}


def preflight():
    """Return a reason the suite cannot run at all, or None."""
    if not (ROOT / "interop" / "node" / "node_modules" / "discovery-swarm").is_dir():
        return "node modules missing: run `npm ci --prefix interop/node` (interop/run does it)"
    if not os.environ.get("SWARM_BIN") and not Path(BIN[0]).is_file():
        return (f"rust binary missing: {BIN[0]} (build it with `cargo build --release -p discovery-swarm "
                f"--bin discovery-swarm`, or use interop/run)")
    return None


def main(argv):
    if os.environ.get("SWARM_NETNS") != "1":
        print("run.py opens sockets and must run inside an isolated network namespace; use interop/run", file=sys.stderr)
        return 2
    names = argv or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}", file=sys.stderr)
        return 2
    blocker = preflight()
    if blocker:
        print(f"interop: {blocker}", file=sys.stderr)
    passed = failed = 0
    for name in names:
        d = LOGS / name
        d.mkdir(parents=True, exist_ok=True)
        try:
            if blocker:
                raise Fail(blocker)
            SCENARIOS[name]()
        except Fail as e:
            failed += 1
            print(f"FAIL {name}: {e}" + (f" (logs: {d})" if CHILDREN else ""), flush=True)
        except Exception as e:  # a bug in the harness or an unexpected child failure
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e} (logs: {d})", flush=True)
        else:
            passed += 1
            print(f"PASS {name}", flush=True)
        finally:
            for p in CHILDREN:
                p.stop()
                p.dump(d)
            CHILDREN.clear()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
