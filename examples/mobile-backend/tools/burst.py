#!/usr/bin/env python3
"""Sends GET requests to one URL as fast as a few keep-alive connections allow and counts the
answers by status (Python standard library only). The mobile-backend walk-through uses it to
go past the usage plan's 1,000 requests/second (bursts of 2,000) and see 429s:

    python3 tools/burst.py URL --requests 6000 --header "Authorization: Bearer $TOKEN" \
        --header "x-api-key: example-mobile-key-0123456789abcdef"

Bounded: stops after --requests requests or --seconds seconds, whichever comes first.
"""
import argparse
import collections
import http.client
import threading
import time
import urllib.parse


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--requests", type=int, default=6000)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--header", action="append", default=[], help="'Name: value' (repeatable)")
    args = ap.parse_args()
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http":
        ap.error("only http:// URLs")
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    target = url.path + ("?" + url.query if url.query else "")

    lock = threading.Lock()
    counts = collections.Counter()
    first_throttled = []
    remaining = [args.requests]
    deadline = time.monotonic() + args.seconds

    def worker():
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] <= 0:
                    break
                remaining[0] -= 1
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            with lock:
                counts[resp.status] += 1
                if resp.status == 429 and not first_throttled:
                    first_throttled.append((resp.getheaders(), body))
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    total = sum(counts.values())
    print(f"{total} requests in {elapsed:.2f} s ({total / elapsed:.0f}/s)")
    for status, n in sorted(counts.items()):
        print(f"  {status}: {n}")
    if first_throttled:
        hdrs, body = first_throttled[0]
        print("first 429:")
        for k, v in hdrs:
            if k.lower() in ("x-amzn-errortype", "retry-after") or k.lower().startswith("ratelimit"):
                print(f"  {k}: {v}")
        print(f"  {body.decode(errors='replace')}")


if __name__ == "__main__":
    main()
