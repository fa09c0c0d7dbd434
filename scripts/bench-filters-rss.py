#!/usr/bin/env python3
"""Idle memory of `labctl serve-mail` with the filters loaded (issue 5).

Renders variant 7 for the local runtime, starts the lab DNS and the mail
server of domain 1 as the lab config has it (yara-x scanner with the shipped
rules compiled, spam filter with its rules and the initial Bayes model), waits
until every port answers, lets it idle, and reads VmRSS (with its anonymous
and file-backed parts) from /proc/PID/status. The same server with the
scanner and the spam filter turned off is measured for comparison, so the
filters' share shows. Target: <= 25 MB RSS at idle with the filters loaded.
Bounded: two server starts, a few seconds each. Needs the release binary
(make build).
"""
import json, os, re, shutil, subprocess, sys, tempfile, time

from benchlib import wait_tcp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABCTL = os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/labctl")
IDLE = 3.0  # seconds of idle before reading


def status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                fields[key] = int(value.split()[0])
    return fields


def measure(config, server):
    proc = subprocess.Popen([LABCTL, "serve-mail", "--config", config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        for port in server["ports"].values():
            if not wait_tcp(server["ip"], port, 20.0):
                sys.exit(f"serve-mail did not listen on {server['ip']}:{port}")
        ready = time.time() - t0
        time.sleep(IDLE)
        return status(proc.pid), ready
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main():
    if not os.path.exists(LABCTL):
        sys.exit(f"{LABCTL} missing: run make build")
    tmp = tempfile.mkdtemp(prefix="bench-filters-rss-")
    dns = None
    try:
        subnet = f"127.221.{200 + os.getpid() % 50}.0/24"
        subprocess.run([LABCTL, "render", "--variant", "7", "--runtime", "local",
                        "--subnet", subnet, "--dir", tmp], check=True, stdout=subprocess.DEVNULL)
        lab = json.load(open(os.path.join(tmp, "lab.json")))
        dns = subprocess.Popen([LABCTL, "serve-dns", "--zones", os.path.join(tmp, "dns"),
                                "--listen", f"{lab['dns']['ip']}:{lab['dns']['port']}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_tcp(lab["dns"]["ip"], lab["dns"]["port"], 20.0):
            sys.exit("serve-dns did not start")
        server = lab["servers"][0]
        config = os.path.join(tmp, "servers", server["hostname"], "config.yaml")
        text = open(config).read()
        if "engine: builtin" not in text or not re.search(r"spam:\s*\n\s*enabled: true", text):
            sys.exit(f"{config}: expected the builtin scanner and the spam filter on")
        bare = config.replace("config.yaml", "config-nofilters.yaml")
        with open(bare, "w") as f:
            f.write(re.sub(r"(spam:\s*\n\s*)enabled: true", r"\1enabled: false",
                           text.replace("engine: builtin", 'engine: "off"')))

        loaded, ready = measure(config, server)
        bare_rss, _ = measure(bare, server)
        mb = lambda kib: f"{kib / 1024:.1f} MiB ({kib * 1024 / 1e6:.1f} MB)"
        print(f"serve-mail {server['hostname']}, filters loaded (yara-x rules + spam rules + Bayes model), "
              f"ready in {ready:.2f} s, after {IDLE:.0f} s idle:")
        print(f"  VmRSS {mb(loaded['VmRSS'])}: anonymous {mb(loaded['RssAnon'])}, "
              f"file-backed (binary text) {mb(loaded['RssFile'])}; peak {mb(loaded['VmHWM'])}")
        print(f"  without scanner and spam filter: VmRSS {mb(bare_rss['VmRSS'])} "
              f"(anonymous {mb(bare_rss['RssAnon'])}); the filters add "
              f"{mb(loaded['VmRSS'] - bare_rss['VmRSS'])}")
        verdict = "met" if loaded["VmRSS"] * 1024 <= 25e6 else "NOT met"
        print(f"  target <= 25 MB RSS at idle: {verdict}")
    finally:
        if dns:
            dns.terminate()
            dns.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
