#!/usr/bin/env python3
"""IMAP benchmark (issue 6): SELECT, FETCH 1:* (FLAGS ENVELOPE) and
UID SEARCH TEXT on a 10,000-message INBOX, in milliseconds, measured with
Python's imaplib over IMAPS against `labctl serve-mail` and, when Debian's
dovecot-imapd is installed, against Dovecot on a copy of the same Maildir
(same certificate, same client, same loopback).

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
        ca = os.path.join(lab, "ca", "ca.crt")
        ours = measure(srv["ip"], port, host, ca, user, pw)
    finally:
        proc.terminate()
        proc.wait()
    theirs = None
    if os.path.exists("/usr/sbin/dovecot"):
        theirs = dovecot(tmp, lab, host, maildir, ca)
    print(f"IMAP, {N} messages, imaplib over TLS, median of {ROUNDS} (ms):")
    print(f"  {'':32} {'maillab':>9} {'dovecot':>9}")
    for k, v in ours.items():
        d = f"{statistics.median(theirs[k]):9.1f}" if theirs else "      n/a"
        print(f"  {k:32} {statistics.median(v):9.1f} {d}")
    if not theirs:
        print("  (dovecot: apt-get install dovecot-imapd for the comparison)")
    subprocess.run(["rm", "-rf", tmp])


def dovecot(tmp, lab, host, maildir, ca):
    """Dovecot 2.3 from Debian on a copy of the Maildir (mail processes as nobody), TLS on a loopback port."""
    base = os.path.join(tmp, "dovecot")
    mail = os.path.join(base, "Maildir")
    os.makedirs(os.path.join(base, "run"))
    subprocess.run(["cp", "-r", os.path.join(maildir), mail], check=True)
    # Put everything back into new/ with the original names: Dovecot indexes from scratch.
    for name in os.listdir(os.path.join(mail, "cur")):
        os.rename(os.path.join(mail, "cur", name), os.path.join(mail, "new", name.split(":")[0]))
    for f in os.listdir(mail):
        if f.startswith("maillab"):
            os.remove(os.path.join(mail, f))
    os.chmod(tmp, 0o755)  # Dovecot's auth process runs as user dovecot
    os.chmod(base, 0o755)
    with open(os.path.join(base, "passwd"), "w") as f:
        f.write("bench:{PLAIN}bench\n")
    cert = os.path.join(lab, "certs", f"{host}.crt")
    key = os.path.join(lab, "certs", f"{host}.key")
    ip, port = "127.211.8.1", 11993
    os.makedirs(os.path.join(base, "home"))
    for d in (mail, os.path.join(base, "home")):  # mail processes run as nobody
        for root, dirs, files in os.walk(d):
            for x in [root] + [os.path.join(root, y) for y in dirs + files]:
                os.chown(x, 65534, 65534)
    conf = os.path.join(base, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(f"""
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = {ip}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
mail_location = maildir:{mail}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {base}/passwd
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={base}/home
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""")
    proc = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return measure(ip, port, host, ca, "bench", "bench")
    except Exception as e:  # the comparison is optional: say why it is missing
        print(f"dovecot comparison failed: {e}; log:")
        print(open(os.path.join(base, "dovecot.log")).read()[-1500:])
        return None
    finally:
        proc.terminate()
        proc.wait()


def measure(ip, port, host, ca, user, pw):
    for _ in range(200):
        try:
            socket.create_connection((ip, port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    ctx = ssl.create_default_context(cafile=ca)

    class Client(imaplib.IMAP4_SSL):
        def _create_socket(self, timeout):
            s = socket.create_connection((ip, port), timeout)
            return self.ssl_context.wrap_socket(s, server_hostname=host)

    if True:
        m = Client(host, port, ssl_context=ctx)
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
    return results


if __name__ == "__main__":
    main()
