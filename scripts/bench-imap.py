#!/usr/bin/env python3
"""IMAP benchmark (issue 6): SELECT, FETCH 1:* (FLAGS ENVELOPE) and
UID SEARCH TEXT on a 10,000-message INBOX, in milliseconds, measured with
Python's imaplib over IMAPS against `labctl serve-mail`.

Usage: scripts/bench-imap.py [LABCTL] [N]   (run by `make bench`)
"""
import imaplib, json, os, socket, ssl, statistics, subprocess, sys, tempfile, time

LABCTL = sys.argv[1] if len(sys.argv) > 1 else "target/x86_64-unknown-linux-gnu/release/labctl"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
ROUNDS = 3


def message(i):
    needle = "needle-word" if i % 100 == 0 else "haystack"
    return (
        f"From: Sender {i} <sender{i}@example.test>\r\n"
        f"To: Bob <bob@example.test>\r\n"
        f"Subject: Benchmark message {i}\r\n"
        f"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <bench-{i}@example.test>\r\n\r\n"
        + ("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n" * (5 + i % 40))
        + f"The {needle} is here.\r\n"
    ).encode()


def main():
    tmp = tempfile.mkdtemp(prefix="imap-bench-")
    lab = os.path.join(tmp, "lab")
    subprocess.run([LABCTL, "render", "--variant", "7", "--runtime", "local",
                    "--subnet", "127.211.7.0/24", "--dir", lab], check=True,
                   stdout=subprocess.DEVNULL)
    info = json.load(open(os.path.join(lab, "lab.json")))
    srv = info["servers"][0]
    user, pw = srv["mailboxes"][0]["address"], srv["mailboxes"][0]["password"]
    host = f"mail.{srv['domain']}"
    maildir = os.path.join(lab, "data", host, "mail", user.lower())
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    for i in range(N):
        body = message(i)
        with open(os.path.join(maildir, "new", f"{1790000000 + i}.M{i}P1.bench,S={len(body)}"), "wb") as f:
            f.write(body)
    proc = subprocess.Popen([LABCTL, "serve-mail", "--config",
                             os.path.join(lab, "servers", host, "config.yaml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = srv["ports"]["imaps"]
        for _ in range(200):
            try:
                socket.create_connection((srv["ip"], port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        ctx = ssl.create_default_context(cafile=os.path.join(lab, "ca", "ca.crt"))

        class Client(imaplib.IMAP4_SSL):
            def _create_socket(self, timeout):
                s = socket.create_connection((srv["ip"], port), timeout)
                return self.ssl_context.wrap_socket(s, server_hostname=host)

        m = Client(srv["ip"], port, ssl_context=ctx)
        m.login(user, pw)
        t = time.perf_counter()
        typ, data = m.select("INBOX")
        first_select = (time.perf_counter() - t) * 1000
        assert int(data[0]) == N, data
        results = {"SELECT (first, indexes new/)": [first_select]}
        for _ in range(ROUNDS):
            t = time.perf_counter(); m.select("INBOX")
            results.setdefault("SELECT", []).append((time.perf_counter() - t) * 1000)
            t = time.perf_counter(); typ, data = m.fetch("1:*", "(FLAGS ENVELOPE)")
            results.setdefault("FETCH 1:* (FLAGS ENVELOPE)", []).append((time.perf_counter() - t) * 1000)
            assert typ == "OK" and len(data) >= N, (typ, len(data))
            t = time.perf_counter(); typ, data = m.uid("SEARCH", None, "TEXT", "needle-word")
            results.setdefault("UID SEARCH TEXT", []).append((time.perf_counter() - t) * 1000)
            assert len(data[0].split()) == N // 100, data
        m.logout()
        print(f"maillab IMAP, {N} messages, imaplib over TLS, median of {ROUNDS} (ms):")
        for k, v in results.items():
            print(f"  {k:32} {statistics.median(v):9.1f}")
    finally:
        proc.terminate()
        proc.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
