#!/usr/bin/env python3
"""End-to-end SMTP benchmark (issue 4): 16 concurrent submitting clients,
maillab and Postfix side by side in the same run.

maillab path of every message: submission on domain 1 (587, STARTTLS +
AUTH PLAIN) -> DKIM signing -> queue (fsync) -> relay over STARTTLS
(certificate verified against the lab CA) to domain 2's MX -> SPF + DKIM +
DMARC verification -> Maildir (fsync).

Postfix path (Debian's postfix and opendkim packages, two instances with
private config_directory and queue_directory on loopback addresses of their
own; scripts/bench_smtp_postfix.py says exactly what is and is not like
maillab): submission on instance 1 (STARTTLS + AUTH PLAIN via Cyrus SASL
sasldb, sender login check) -> OpenDKIM signing milter -> queue (fsync) ->
smtp client over STARTTLS (certificate verified against the lab CA for
mail.<domain 2>, connections reused) to instance 2 -> OpenDKIM verifying
milter -> virtual(8) Maildir delivery (fsync); no SPF, DMARC or content
filters. Both are driven by the same Python load generator.

A message counts as delivered when its file appears in the recipient's
Maildir `new/`; its delivery time is the file's ctime (set by the rename or
link into new/), so the watcher needs no tight polling. Prints messages/s
(first submission to last delivery), p50/p99 of the end-to-end latency
(start of the submission -> file in new/) and of the submission reply, and
CPU seconds used by each server process, the DNS server and the load
generator. Bounded: a fixed message count per size and a time limit per run;
everything is torn down (also on failure or Ctrl-C).

Usage: scripts/bench-smtp.py [--only maillab|postfix] [--sizes 1,100]
Environment: BENCH_SUBNET (maillab lab, default 127.211.<pid>.0/24),
BENCH_PF_NET (Postfix instances, default 127.212.<pid>), BENCH_NO_INSTALL=1
(do not apt-get install postfix when it is missing), BENCH_KEEP=1 (keep the
temporary folder with logs and transcripts).
"""
import argparse, json, os, resource, shutil, signal, smtplib, ssl, subprocess, sys
import tempfile, threading, time

from benchlib import stop_proc, wait_tcp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABCTL = os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/labctl")
CLIENTS = 16
PER_CLIENT = {1: 60, 100: 15}  # messages per client by size in KiB
TIME_LIMIT = 120.0  # per run
TICK = os.sysconf("SC_CLK_TCK")


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] if v else float("nan")


def proc_cpu(pid, children=False):
    """CPU seconds of a process (all threads); with `children`, also of its
    reaped children (Postfix's master reaps its daemons)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def tree_cpu(root):
    """CPU seconds of `root` and its reaped children plus its live descendants."""
    total = proc_cpu(root, children=True)
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    todo = list(kids.get(root, []))
    while todo:
        p = todo.pop()
        total += proc_cpu(p)
        todo.extend(kids.get(p, []))
    return total


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


class Teardown:
    """Processes and commands to stop, run in reverse order exactly once."""

    def __init__(self):
        self.steps = []

    def add(self, fn):
        self.steps.append(fn)

    def run(self):
        while self.steps:
            fn = self.steps.pop()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - teardown goes on
                print(f"teardown: {e!r}", file=sys.stderr)


def load(target, size_kib, per_client):
    """Drives `target` with CLIENTS concurrent submitting clients; returns the figures."""
    total = CLIENTS * per_client
    size = size_kib * 1024
    sent_at, submit_lat, delivered_at = {}, [], {}
    lock = threading.Lock()
    tag = f"{size}-{time.time_ns()}"
    filler = ("x" * 75 + "\r\n") * (size // 77 + 1)
    errors = []
    ctx = ssl.create_default_context(cafile=target["ca"])
    user, password = target["user"], target["password"]

    def client(n):
        try:
            s = smtplib.SMTP(target["ip"], target["port"], timeout=60)
            s.ehlo("bench.example")
            s._host = target["tls_name"]
            s.starttls(context=ctx)
            s.ehlo("bench.example")
            s.login(user, password)
            for k in range(per_client):
                mid = f"{tag}-{n}-{k}"
                rcpt = target["rcpts"][(n + k) % len(target["rcpts"])]
                body = (f"From: {user}\r\nTo: {rcpt}\r\nSubject: bench {mid}\r\n"
                        f"X-Bench-Id: {mid}\r\n\r\n")
                body = (body + filler)[:size].rsplit("\r\n", 1)[0] + "\r\n"
                t0 = time.time()
                with lock:
                    sent_at[mid] = t0
                s.sendmail(user, [rcpt], body.encode())
                with lock:
                    submit_lat.append(time.time() - t0)
            s.quit()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    def watch(stop):
        # New files only; the delivery time is the ctime of the rename/link
        # into new/, so a 20 ms poll loses no precision.
        seen = set()
        while not stop.is_set() or len(delivered_at) < len(sent_at):
            for d in target["maildirs"]:
                try:
                    entries = list(os.scandir(d))
                except FileNotFoundError:
                    continue
                for e in entries:
                    if e.name in seen:
                        continue
                    seen.add(e.name)
                    try:
                        ctime = e.stat().st_ctime_ns / 1e9
                        with open(e.path, "rb") as f:
                            head = f.read(8192).decode("latin-1")
                    except OSError:
                        continue
                    i = head.find("X-Bench-Id: ")
                    j = head.find("\n", i)
                    if i >= 0 and j > i:
                        # Postfix stores LF line ends, maillab CRLF.
                        mid = head[i + 12:j].rstrip("\r")
                        if mid.startswith(tag):
                            delivered_at[mid] = ctime
            if time.time() - start > TIME_LIMIT:
                return
            time.sleep(0.02)

    cpu0 = {k: f() for k, f in target["cpu"].items()}
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    load0 = loadavg()
    start = time.time()
    stop = threading.Event()
    # Daemon threads: an interrupted run does not wait for them at exit.
    watcher = threading.Thread(target=watch, args=(stop,), daemon=True)
    watcher.start()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    deadline = start + TIME_LIMIT
    for t in threads:
        t.join(max(0.0, deadline - time.time()))
    if any(t.is_alive() for t in threads):
        errors.append(f"clients still running after {TIME_LIMIT:.0f} s")
    stop.set()
    watcher.join(max(0.0, deadline - time.time()) + 1)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = {k: f() - cpu0[k] for k, f in target["cpu"].items()}
    cpu["client"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    end = max(delivered_at.values()) if delivered_at else time.time()
    e2e = [delivered_at[m] - sent_at[m] for m in delivered_at if m in sent_at]
    return {
        "size": size_kib, "total": total, "delivered": len(delivered_at),
        "secs": end - start, "rate": len(delivered_at) / (end - start),
        "p50": pct(e2e, 50), "p99": pct(e2e, 99),
        "sub50": pct(submit_lat, 50), "sub99": pct(submit_lat, 99),
        "cpu": cpu, "load": f"{load0}->{loadavg()}", "errors": errors,
    }


def report(name, r):
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in r["cpu"].items())
    print(f"{name:>8} {r['size']:>3} KiB: {r['delivered']}/{r['total']} delivered in "
          f"{r['secs']:.2f} s = {r['rate']:.0f} msgs/s end to end; latency p50 "
          f"{r['p50'] * 1000:.0f} ms, p99 {r['p99'] * 1000:.0f} ms; submission reply p50 "
          f"{r['sub50'] * 1000:.0f} ms, p99 {r['sub99'] * 1000:.0f} ms", flush=True)
    print(f"{'':>18}CPU s: {cpu}; load average {r['load']}", flush=True)
    if r["errors"]:
        print(f"{'':>18}{len(r['errors'])} client errors, first: {r['errors'][0]}", flush=True)


def maillab_lab(tmp, down):
    """Renders variant 7 for the local runtime and starts labdns and both servers."""
    subnet = os.environ.get("BENCH_SUBNET", f"127.211.{os.getpid() % 250}.0/24")
    lab_dir = os.path.join(tmp, "maillab")
    subprocess.run([LABCTL, "render", "--variant", "7", "--runtime", "local",
                    "--subnet", subnet, "--dir", lab_dir], check=True, stdout=subprocess.DEVNULL)
    lab = json.load(open(os.path.join(lab_dir, "lab.json")))
    dns = f"{lab['dns']['ip']}:{lab['dns']['port']}"
    log = open(os.path.join(tmp, "dns.log"), "w")
    p = subprocess.Popen([LABCTL, "serve-dns", "--zones", os.path.join(lab_dir, "dns"),
                          "--listen", dns], stdout=log, stderr=log)
    down.add(lambda p=p: stop_proc(p))
    if not wait_tcp(lab["dns"]["ip"], lab["dns"]["port"]) or p.poll() is not None:
        sys.exit(f"serve-dns did not start (address {dns} taken?), see {tmp}/dns.log")
    cpu = {"dns": lambda pid=p.pid: proc_cpu(pid)}
    for i, s in enumerate(lab["servers"], 1):
        cfg = os.path.join(lab_dir, "servers", f"mail.{s['domain']}", "config.yaml")
        log = open(os.path.join(tmp, f"{s['domain']}.log"), "w")
        p = subprocess.Popen([LABCTL, "serve-mail", "--config", cfg], stdout=log, stderr=log)
        down.add(lambda p=p: stop_proc(p))
        if not wait_tcp(s["ip"], s["ports"]["submission"]) or p.poll() is not None:
            sys.exit(f"serve-mail {s['domain']} did not start (address taken?)")
        cpu[f"server{i}"] = lambda pid=p.pid: proc_cpu(pid)
    s1, s2 = lab["servers"]
    rcpts = [m["address"] for m in s2["mailboxes"]]
    return lab_dir, lab, {
        "ip": s1["ip"], "port": s1["ports"]["submission"], "tls_name": s1["hostname"],
        "ca": os.path.join(lab_dir, "ca", "ca.crt"),
        "user": s1["mailboxes"][0]["address"], "password": s1["mailboxes"][0]["password"],
        "rcpts": rcpts,
        "maildirs": [os.path.join(lab_dir, "data", f"mail.{s2['domain']}", "mail", r, "new")
                     for r in rcpts],
        "cpu": cpu,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["maillab", "postfix"])
    ap.add_argument("--sizes", default="1,100", help="message sizes in KiB (1 and/or 100)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if not os.path.exists(LABCTL):
        sys.exit(f"{LABCTL} missing: run `make build` first")
    # SIGTERM/SIGHUP tear down like Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    tmp = tempfile.mkdtemp(prefix="bench-smtp-")
    down = Teardown()
    if os.environ.get("BENCH_KEEP"):
        print(f"keeping {tmp} (BENCH_KEEP)", flush=True)
    else:
        down.add(lambda: shutil.rmtree(tmp, ignore_errors=True))
    results = []
    try:
        lab_dir, lab, target = maillab_lab(tmp, down)
        s1, s2 = lab["servers"]
        print(f"SMTP end to end, {s1['domain']} -> {s2['domain']}, {CLIENTS} clients, "
              f"{os.cpu_count()} CPUs, load average {loadavg()}", flush=True)
        if args.only != "postfix":
            for size in sizes:
                r = load(target, size, PER_CLIENT[size])
                report("maillab", r)
                results.append(("maillab", r))
        if args.only != "maillab":
            import bench_smtp_postfix as pf  # scripts/bench_smtp_postfix.py
            pf_target = pf.postfix_lab(tmp, lab_dir, lab, down)
            if pf_target is None:
                print("  postfix: not available (see above); no comparison", flush=True)
            else:
                for size in sizes:
                    r = load(pf_target, size, PER_CLIENT[size])
                    report("postfix", r)
                    results.append(("postfix", r))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        down.run()
    if results:
        print(f"summary: {CLIENTS} clients, msgs/s (p50/p99 ms)")
        for size in sizes:
            row = [f"{n} {r['rate']:.0f} ({r['p50'] * 1000:.0f}/{r['p99'] * 1000:.0f})"
                   for n, r in results if r["size"] == size]
            print(f"  {size:>3} KiB: " + "; ".join(row))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main())
