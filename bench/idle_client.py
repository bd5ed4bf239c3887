#!/usr/bin/env python3
"""Idle kept-alive connections for bench/idle.sh (issue 17).

  idle_client.py HOST PORT PATH N

Opens N connections to HOST:PORT (127.0.0.0/8 only), each from its own source address in
127.0.0.0/8 (127.1.0.1, 127.1.0.2, ...: one connection per source address, so that N can go
past the ephemeral port range), sends one HTTP/1.1 keep-alive GET PATH on each, reads the whole
answer (a 200 with a Content-Length), and then keeps every connection open and silent. It
prints "ready OK FAILED" once every connection has its answer (or failed), then waits for a
line (or EOF) on stdin and closes them all. At most 512 connects are in flight at once, and the
whole thing gives up after 300 s.
"""

import ipaddress
import selectors
import socket
import sys
import time

MAX_IN_FLIGHT = 512
DEADLINE_S = 300


def source(i):
    # 127.1.0.1 upwards, skipping .0 and .255 in the last byte (not needed, just tidy).
    a, b = divmod(i, 254)
    return str(ipaddress.IPv4Address((127 << 24) | (1 << 16) | (a << 8) | (b + 1)))


def main():
    host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    if not ipaddress.IPv4Address(host).is_loopback:
        sys.exit("only 127.0.0.0/8 targets")
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    conns = {}  # socket -> [state, received bytes]
    opened = ok = failed = 0
    deadline = time.monotonic() + DEADLINE_S
    done = []  # kept open after their answer

    def fail(s):
        nonlocal failed
        failed += 1
        sel.unregister(s)
        s.close()
        del conns[s]

    while ok + failed < n:
        if time.monotonic() > deadline:
            sys.exit(f"gave up: {ok} answered, {failed} failed, {n - ok - failed} pending")
        while opened < n and len(conns) < MAX_IN_FLIGHT:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind((source(opened), 0))
            opened += 1
            s.connect_ex((host, port))
            conns[s] = ["connecting", b""]
            sel.register(s, selectors.EVENT_WRITE)
        for key, _ in sel.select(timeout=1.0):
            s = key.fileobj
            st = conns[s]
            if st[0] == "connecting":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    fail(s)
                    continue
                s.send(request)  # small: fits the empty send buffer
                st[0] = "reading"
                sel.modify(s, selectors.EVENT_READ)
            else:
                try:
                    chunk = s.recv(65536)
                except OSError:
                    fail(s)
                    continue
                if not chunk:
                    fail(s)
                    continue
                st[1] += chunk
                head, sep, body = st[1].partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(body) < length:
                    continue
                sel.unregister(s)
                del conns[s]
                if head.startswith(b"HTTP/1.1 200"):
                    ok += 1
                    done.append(s)
                else:
                    failed += 1
                    s.close()
    print(f"ready {ok} {failed}", flush=True)
    sys.stdin.readline()
    for s in done:
        s.close()


if __name__ == "__main__":
    main()
