#!/usr/bin/env python3
"""Formats bench/scale.sh's results folder (one sub-folder per size: `record` key=value lines,
the generator's gen.json, scale-probe's probe.json and parse1.json) as two Markdown tables."""

import json
import os
import sys


def load(d):
    rec = {}
    with open(os.path.join(d, "record")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            rec[k] = v
    for name in ("wrk-first", "wrk-last"):
        path = os.path.join(d, name)
        if os.path.exists(path):
            with open(path) as f:
                rec[name] = [line.split() for line in f if line.strip()]
    for name in ("gen", "probe", "parse1"):
        path = os.path.join(d, f"{name}.json")
        if os.path.exists(path) and os.path.getsize(path):
            with open(path) as f:
                rec[name] = json.load(f)
    return rec


def num(v):
    return f"{int(v):,}"


def dur_ms(v):
    v = float(v)
    return f"{v:.0f} ms" if v < 1000 else f"{v / 1000:.2f} s"


def dur_s(v):
    try:
        return f"{float(v):.2f} s"
    except (TypeError, ValueError):
        return v or "-"


def size(b):
    b = float(b)
    if b < 1024 * 1024:
        return f"{b / 1024:.0f} KiB"
    return f"{b / 1024 / 1024:.1f} MiB"


def kib(v):
    return size(float(v) * 1024) if v else "-"


def main():
    root = sys.argv[1]
    recs = [load(os.path.join(root, d)) for d in sorted(os.listdir(root))]
    print("Compile and config (scale-probe: the proxy's load path alone, on CPU 0):")
    print()
    print("| APIs / routes / keys | objects | manifests | parse (files of 1,000 objects) "
          "| parse (one file) | compile | validate + to JSON | config JSON | as published "
          "| fits one ConfigMap | probe peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in recs:
        label = f"{num(r['apis'])} / {num(r['routes'])} / {num(r['keys'])}"
        g, p, p1 = r.get("gen", {}), r.get("probe"), r.get("parse1")
        one = dur_ms(p1["parse_ms"]) if p1 else r.get("parse1_failed", "-")
        if not p:
            print(f"| {label} | {num(g.get('objects', 0))} | {size(g.get('bytes', 0))} "
                  f"| {r.get('probe_failed', '-')} | {one} | - | - | - | - | - | - |")
            continue
        errs = f" ({p['errors']} errors)" if p["errors"] else ""
        print(f"| {label} | {num(p['objects'])} | {size(p['input_bytes'])} "
              f"| {dur_ms(p['read_ms'] + p['parse_ms'])} | {one} "
              f"| {dur_ms(p['snapshot_ms'] + p['compile_ms'])}{errs} "
              f"| {dur_ms(p['validate_ms'] + p['to_json_ms'])} | {size(p['json_bytes'])} "
              f"| {size(p['published_bytes'])} {p['published_as']} "
              f"| {'yes' if p['fits_one_configmap'] else 'no'} | {kib(p['peak_rss_kib'])} |")
    print()
    print("Proxy (portico-proxy --manifests, --workers 1, on CPU 0):")
    print()
    print("| APIs / routes / keys | ready after start | RSS ready | key added, served after "
          "| route added | stage variable changed | RSS after the changes (peak) "
          "| CPU/request first tenant | last tenant | req/s first / last | wrk errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in recs:
        label = f"{num(r['apis'])} / {num(r['routes'])} / {num(r['keys'])}"
        if "rss_kib" not in r:
            rss = f"{kib(r['rss_at_cap_kib'])} at the cap" if r.get("rss_at_cap_kib") else "-"
            print(f"| {label} | {r.get('ready', '-')} | {rss} | - | - | - | - | - | - | - | - |")
            continue
        cpu = lambda t: f"{float(r['cpu_' + t]):.1f} us" if r.get("cpu_" + t) else "-"
        rps = f"{float(r.get('rps_first', 0)):,.0f} / {float(r.get('rps_last', 0)):,.0f}"
        errors = int(r.get("errors_first", 0)) + int(r.get("errors_last", 0))
        print(f"| {label} | {dur_s(r['ready'])} | {kib(r['rss_kib'])} "
              f"| {dur_s(r.get('change_key'))} | {dur_s(r.get('change_route'))} "
              f"| {dur_s(r.get('change_stagevar'))} "
              f"| {kib(r.get('rss_after_kib'))} ({kib(r.get('hwm_after_kib'))}) "
              f"| {cpu('first')} | {cpu('last')} | {rps} | {errors} |")
    print()
    print("Proxy on the published config (portico-proxy --config: the compiled GatewayConfig, "
          "as a Kubernetes-mode proxy holds it; --workers 1, on CPU 0):")
    print()
    print("| APIs / routes / keys | ready after start | RSS ready | key added, served after "
          "| stage variable changed | Runtime build per change | RSS after the changes (peak) |")
    print("|---|---|---|---|---|---|---|")
    for r in recs:
        label = f"{num(r['apis'])} / {num(r['routes'])} / {num(r['keys'])}"
        if "pub_ready" not in r:
            continue
        builds = r.get("pub_build_ms", "").split()
        build = " / ".join(f"{int(b)} ms" for b in builds) if builds else "-"
        print(f"| {label} | {dur_s(r['pub_ready'])} | {kib(r.get('pub_rss_kib'))} "
              f"| {dur_s(r.get('pub_change_key'))} | {dur_s(r.get('pub_change_stagevar'))} "
              f"| {build} | {kib(r.get('pub_rss_after_kib'))} ({kib(r.get('pub_hwm_after_kib'))}) |")
    print()
    print("<details><summary>raw wrk runs (cpu_us/request req/s requests errors), "
          "interleaved first, last, first, last ...</summary>")
    print()
    for r in recs:
        if "wrk-first" in r:
            print(f"{num(r['apis'])} / {num(r['routes'])} / {num(r['keys'])} "
                  f"(load average at the size's start: {r.get('load', '?')}):")
            for t in ("first", "last"):
                print(f"    {t}: " + ", ".join(" ".join(w) for w in r.get("wrk-" + t, [])))
    print()
    print("</details>")


if __name__ == "__main__":
    main()
