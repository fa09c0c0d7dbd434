#!/usr/bin/env python3
"""End-to-end SMTP benchmark (issue 4): 16 concurrent submitting clients.

Path of every message: submission on domain 1 (587, STARTTLS + AUTH) ->
DKIM signing -> queue (fsync) -> relay over STARTTLS to domain 2's MX ->
SPF + DKIM + DMARC verification -> Maildir (fsync). A message counts as
delivered when its file appears in the recipient's Maildir `new/`.

Prints messages/s (first submission to last delivery) and p50/p99 of the
end-to-end latency (DATA sent -> file in Maildir) and of the submission
reply, for 1 KiB and 100 KiB messages. Bounded: a fixed message count per
size and a hard time limit. Needs the release binary (make build).
"""
import json, os, shutil, smtplib, ssl, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABCTL = os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/labctl")
CLIENTS = 16
RUNS = [(1024, 60), (100 * 1024, 15)]  # (message size, messages per client)
TIME_LIMIT = 180.0


def wait_tcp(host, port, timeout=10.0):
    import socket
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection((host, port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))] if v else float("nan")


def main():
    if not os.path.exists(LABCTL):
        sys.exit(f"{LABCTL} missing: run `make build` first")
    tmp = tempfile.mkdtemp(prefix="bench-smtp-")
    procs = []
    try:
        subnet = f"127.211.{os.getpid() % 250}.0/24"
        subprocess.run([LABCTL, "render", "--variant", "7", "--runtime", "local",
                        "--subnet", subnet, "--dir", tmp], check=True, stdout=subprocess.DEVNULL)
        lab = json.load(open(os.path.join(tmp, "lab.json")))
        dns = f"{lab['dns']['ip']}:{lab['dns']['port']}"
        procs.append(subprocess.Popen([LABCTL, "serve-dns", "--zones", os.path.join(tmp, "dns"),
                                       "--listen", dns], stdout=subprocess.DEVNULL))
        if not wait_tcp(lab["dns"]["ip"], lab["dns"]["port"]):
            sys.exit("serve-dns did not start")
        for s in lab["servers"]:
            cfg = os.path.join(tmp, "servers", f"mail.{s['domain']}", "config.yaml")
            log = open(os.path.join(tmp, f"{s['domain']}.log"), "w")
            procs.append(subprocess.Popen([LABCTL, "serve-mail", "--config", cfg],
                                          stdout=log, stderr=log))
            if not wait_tcp(s["ip"], s["ports"]["submission"]):
                sys.exit(f"serve-mail {s['domain']} did not start")
        s1, s2 = lab["servers"]
        user, password = s1["mailboxes"][0]["address"], s1["mailboxes"][0]["password"]
        rcpts = [m["address"] for m in s2["mailboxes"]]
        maildirs = [os.path.join(tmp, "data", f"mail.{s2['domain']}", "mail", r, "new") for r in rcpts]
        ctx = ssl.create_default_context(cafile=os.path.join(tmp, "ca", "ca.crt"))
        print(f"lab: variant 7, {s1['domain']} -> {s2['domain']}, {CLIENTS} clients, "
              f"{os.cpu_count()} CPUs")
        for size, per_client in RUNS:
            run(size, per_client, s1, user, password, rcpts, maildirs, ctx)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def run(size, per_client, s1, user, password, rcpts, maildirs, ctx):
    total = CLIENTS * per_client
    sent_at, submit_lat, delivered_at = {}, [], {}
    lock = threading.Lock()
    tag = f"{size}-{time.time_ns()}"
    filler = ("x" * 75 + "\r\n") * (size // 77 + 1)
    errors = []

    def client(n):
        try:
            s = smtplib.SMTP(s1["ip"], s1["ports"]["submission"], timeout=60)
            s.ehlo("bench.example")
            s._host = s1["hostname"]
            s.starttls(context=ctx)
            s.ehlo("bench.example")
            s.login(user, password)
            for k in range(per_client):
                mid = f"{tag}-{n}-{k}"
                rcpt = rcpts[(n + k) % len(rcpts)]
                body = (f"From: {user}\r\nTo: {rcpt}\r\nSubject: bench {mid}\r\n"
                        f"X-Bench-Id: {mid}\r\n\r\n")
                body = (body + filler)[:size].rsplit("\r\n", 1)[0] + "\r\n"
                t0 = time.perf_counter()
                with lock:
                    sent_at[mid] = t0
                s.sendmail(user, [rcpt], body.encode())
                with lock:
                    submit_lat.append(time.perf_counter() - t0)
            s.quit()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    def watch(stop):
        seen = set()
        while not stop.is_set() or len(delivered_at) < len(sent_at):
            now = time.perf_counter()
            for d in maildirs:
                try:
                    names = os.listdir(d)
                except FileNotFoundError:
                    continue
                for name in names:
                    if name in seen:
                        continue
                    seen.add(name)
                    try:
                        with open(os.path.join(d, name), "rb") as f:
                            head = f.read(8192).decode("latin-1")
                    except OSError:
                        continue
                    i = head.find("X-Bench-Id: ")
                    if i >= 0:
                        mid = head[i + 12:head.index("\r\n", i)]
                        if mid.startswith(tag):
                            delivered_at[mid] = now
            if time.perf_counter() - start > TIME_LIMIT:
                return
            time.sleep(0.002)

    start = time.perf_counter()
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,))
    watcher.start()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    end = max(delivered_at.values()) if delivered_at else time.perf_counter()
    e2e = [delivered_at[m] - sent_at[m] for m in delivered_at if m in sent_at]
    label = f"{size // 1024} KiB"
    print(f"{label:>8}: {len(delivered_at)}/{total} delivered in {end - start:.2f} s = "
          f"{len(delivered_at) / (end - start):.0f} msgs/s end to end; "
          f"latency p50 {pct(e2e, 50) * 1000:.0f} ms, p99 {pct(e2e, 99) * 1000:.0f} ms; "
          f"submission reply p50 {pct(submit_lat, 50) * 1000:.0f} ms, "
          f"p99 {pct(submit_lat, 99) * 1000:.0f} ms")
    if errors:
        print(f"          {len(errors)} client errors, first: {errors[0]}")


if __name__ == "__main__":
    main()
