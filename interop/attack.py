#!/usr/bin/env python3
"""Hostile handshake inputs against a discovery-swarm TCP listener.

    python3 interop/attack.py PORT [--host H] [--only zero,big,...] [--expect-id HEX] [--wait S]

Every attack opens its own TCP connection (all run concurrently), sends its payload and then
reads until the server closes the connection or `--wait` seconds (default 6) pass. For each it
reports how the server reacted and whether the server first sent its own handshake
(varint 0x20 + 32-byte id). Prints one JSON object per attack. Run it inside ../shared/netns.
"""
import json
import os
import socket
import sys
import threading
import time

ATTACKS = {
    "zero": bytes([0x00]) + b"after a zero-length prefix\n",        # varint 0, then bytes
    "big": bytes([0x80, 0x80, 0x80, 0x80, 0x08]) + b"x" * 64,        # varint 2^31, then bytes
    "truncated": bytes([0x80]),                                     # unfinished varint, silence
    "garbage": None,                                                 # 64 KiB random, made per run
    "silent": b"",                                                   # nothing at all
}


def attack(name, host, port, payload, wait, expect_id=None):
    """Run one attack; return a dict describing the server's reaction."""
    r = {"attack": name, "local_port": None, "connected": False, "closed": None,
         "closed_after_ms": None, "received": 0, "sent_handshake": False, "error": None}
    t0 = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=2)
    except OSError as e:
        r["error"] = f"connect: {e}"
        return r
    r["connected"] = True
    r["local_port"] = s.getsockname()[1]
    buf = bytearray()
    try:
        if payload:
            s.settimeout(wait)
            try:
                s.sendall(payload)
            except socket.timeout:
                r["closed"] = "open"                # server never read our payload
        deadline = t0 + wait
        while r["closed"] is None:
            left = deadline - time.monotonic()
            if left <= 0:
                r["closed"] = "open"                # still open after `wait` seconds
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                r["closed"] = "fin"
                break
            buf += chunk
    except (ConnectionResetError, BrokenPipeError) as e:
        r["closed"] = "rst"
        r["error"] = type(e).__name__
    except OSError as e:
        r["closed"] = "error"
        r["error"] = str(e)
    finally:
        if r["closed"] not in (None, "open"):
            r["closed_after_ms"] = round((time.monotonic() - t0) * 1000)
        s.close()
    r["received"] = len(buf)
    hs = len(buf) >= 33 and buf[0] == 0x20
    if hs and expect_id:
        hs = buf[1:33] == bytes.fromhex(expect_id)
    r["sent_handshake"] = bool(hs)
    r["remote_id"] = buf[1:33].hex() if len(buf) >= 33 and buf[0] == 0x20 else None
    return r


def run_attacks(port, host="127.0.0.1", only=None, wait=6.0, expect_id=None):
    """Run the selected attacks concurrently; return {name: result}."""
    names = only or list(ATTACKS)
    results = {}

    def one(name):
        payload = ATTACKS[name] if ATTACKS[name] is not None else os.urandom(65536)
        results[name] = attack(name, host, port, payload, wait, expect_id)

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {n: results[n] for n in names}


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    port, host, only, wait, expect_id = int(argv[0]), "127.0.0.1", None, 6.0, None
    it = iter(argv[1:])
    for k in it:
        v = next(it)
        if k == "--host":
            host = v
        elif k == "--only":
            only = v.split(",")
        elif k == "--wait":
            wait = float(v)
        elif k == "--expect-id":
            expect_id = v
        else:
            print(f"unknown argument {k}", file=sys.stderr)
            return 2
    for r in run_attacks(port, host, only, wait, expect_id).values():
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
