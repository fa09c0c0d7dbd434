#!/usr/bin/env python3
"""Issue 13's hostile cases replayed against a Docker lab, as a student on
the host would send them (every client arrives from the bridge gateway), with
the figures the issue asks for: after each case both mail containers still
run with no restart and no OOM kill, and a fresh client is greeted on 25 and
993 within 3 s; the server's CPU time (case 3) and RSS (case 6) come from
/proc/<container pid>/ on the host.

Usage: scripts/hostile-docker.py [LABCTL] [VARIANT]   (root, Docker running)

It brings up its own lab (instance `hostile`, subnet 10.81.N.0/24) and
removes it (down --purge) at the end, also on failure. Every loop is bounded
in count and time. Exit 0 when every case holds, 1 otherwise.
"""
import imaplib, json, os, socket, ssl, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABCTL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    ROOT, "target/x86_64-unknown-linux-gnu/release/labctl")
VARIANT = int(sys.argv[2]) if len(sys.argv) > 2 else 3
ENV = dict(os.environ, LABCTL_INSTANCE="hostile")
FAILED = []


def labctl(*args, check=True):
    return subprocess.run([LABCTL, *args], env=ENV, check=check,
                          capture_output=True, text=True)


def container_state(name):
    out = subprocess.run(["docker", "inspect", name], capture_output=True, text=True, check=True)
    j = json.loads(out.stdout)[0]
    return j["State"]["Running"], j["RestartCount"], j["State"]["OOMKilled"], j["State"]["Pid"]


def usage(pid):
    """CPU seconds (user + system) and RSS in MiB of a process."""
    rest = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks = int(rest[11]) + int(rest[12])
    rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS"))
    return ticks / os.sysconf("SC_CLK_TCK"), rss / 1024


def greeting_time(ip, port, ctx=None, name=None):
    start = time.monotonic()
    with socket.create_connection((ip, port), timeout=5) as s:
        if ctx:
            s = ctx.wrap_socket(s, server_hostname=name)
        s.settimeout(5)
        data = s.recv(200)
    return time.monotonic() - start, data[:40]


def check(name, ok, evidence):
    print(f"{'PASS' if ok else 'FAIL'} {name}: {evidence}", flush=True)
    if not ok:
        FAILED.append(name)


def healthy(case, lab, ctx):
    """Both containers run, never restarted or OOM-killed; a fresh client is
    greeted on 25 and 993 within 3 s."""
    for s in lab["servers"]:
        running, restarts, oom, _ = container_state(s["container"])
        check(f"{case}: {s['container']} alive", running and restarts == 0 and not oom,
              f"running={running} restarts={restarts} oom_killed={oom}")
    s = lab["servers"][1]
    t25, g25 = greeting_time(s["ip"], 25)
    t993, g993 = greeting_time(s["ip"], 993, ctx, s["hostname"])
    check(f"{case}: fresh client greeted", t25 < 3 and t993 < 3 and g25.startswith(b"220")
          and g993.startswith(b"* OK"), f"25 in {t25:.2f}s, 993 in {t993:.2f}s")


class Imaps(imaplib.IMAP4_SSL):
    """IMAPS to an address, verifying the certificate for the server's name."""

    def __init__(self, ip, name, ctx):
        self.tls_name = name
        super().__init__(ip, 993, ssl_context=ctx, timeout=30)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.tls_name)


def imaps_login(s, ctx):
    m = Imaps(s["ip"], s["hostname"], ctx)
    mb = s["mailboxes"][0]
    m.login(mb["address"], mb["password"])
    return m


def main():
    tmp = tempfile.mkdtemp(prefix="hostile-docker-")
    lab_dir = os.path.join(tmp, f"lab-{VARIANT:02}")
    try:
        up = labctl("up", "--variant", str(VARIANT), "--dir", lab_dir,
                    "--subnet", f"10.81.{VARIANT}.0/24", check=False)
        if up.returncode != 0:
            print(up.stdout, up.stderr)
            return 1
        lab = json.load(open(os.path.join(lab_dir, "lab.json")))
        ctx = ssl.create_default_context(cafile=os.path.join(lab_dir, "ca/ca.crt"))
        target = lab["servers"][1]
        pid = container_state(target["container"])[3]
        print(f"lab {lab['name']}: target {target['container']} ({target['ip']}), pid {pid}")

        # Case 1: 40,000 nested message/rfc822 parts to port 25.
        body = "".join("Content-Type: message/rfc822\r\n\r\n" for _ in range(40000)) + "x\r\n"
        msg = (f"From: a@x.test\r\nTo: {target['mailboxes'][0]['address']}\r\nSubject: nest\r\n"
               f"Content-Type: message/rfc822\r\n\r\n{body}")
        with socket.create_connection((target["ip"], 25), timeout=30) as c:
            f = c.makefile("rwb")
            f.readline()
            replies = []
            for cmd in ["EHLO host.test", "MAIL FROM:<>",
                        f"RCPT TO:<{target['mailboxes'][0]['address']}>", "DATA"]:
                f.write(cmd.encode() + b"\r\n"); f.flush()
                while True:
                    line = f.readline()
                    if line[3:4] != b"-":
                        break
                replies.append(line)
            f.write(msg.encode() + b"\r\n.\r\n"); f.flush()
            end = f.readline()
        check("case 1: 40,000 nested message/rfc822 refused", end.startswith(b"554 5.6.0"),
              f"{end.strip().decode(errors='replace')} ({len(msg) / 1e6:.1f} MB)")
        healthy("case 1", lab, ctx)

        # Case 2: LIST with 60,000 asterisks and a backtracking pattern.
        m = imaps_login(target, ctx)
        m.create("a" * 40)
        start = time.monotonic()
        answers = []
        for pattern in ["*" * 60000 + "X", "*a*a*a*a*a*a*a*a*a*a*a*a*a*ab"]:
            try:
                answers.append(m._simple_command("LIST", '""', f'"{pattern}"')[0])
            except imaplib.IMAP4.error as e:
                answers.append(str(e)[:40])
        took = time.monotonic() - start
        m.delete("a" * 40)
        m.logout()
        check("case 2: pathological LIST patterns answered", took < 2,
              f"both in {took:.3f}s: {answers}")
        healthy("case 2", lab, ctx)

        # Case 3: a SEARCH of 16,001 literals before login on 143.
        cpu0, _ = usage(pid)
        with socket.create_connection((target["ip"], 143), timeout=30) as c:
            c.recv(500)
            c.sendall(b"a SEARCH TEXT {0+}\r\n" + b" TEXT {0+}\r\n" * 16000 + b"\r\n")
            c.settimeout(10)
            reply = b""
            try:
                while b"\r\n" not in reply:
                    reply += c.recv(500)
            except (socket.timeout, ConnectionError):
                pass
        time.sleep(0.5)
        cpu1, _ = usage(pid)
        check("case 3: 16,001 literals before login", cpu1 - cpu0 < 1,
              f"server CPU {cpu1 - cpu0:.2f}s; reply {reply[:60]!r}")
        healthy("case 3", lab, ctx)

        # Case 4: 40 connections to 993 that never send a ClientHello.
        idle = [socket.create_connection((target["ip"], 993), timeout=5) for _ in range(40)]
        t, g = greeting_time(target["ip"], 993, ctx, target["hostname"])
        t25, _ = greeting_time(target["ip"], 25)
        check("case 4: served while 40 idle TLS connections are held", t < 3 and t25 < 3,
              f"993 greeted in {t:.2f}s, 25 in {t25:.2f}s")
        for s in idle:
            s.close()
        healthy("case 4", lab, ctx)

        # Case 5: junk commands.
        with socket.create_connection((target["ip"], 25), timeout=30) as c:
            f = c.makefile("rwb")
            f.readline()
            answered = 0
            deadline = time.monotonic() + 60
            for _ in range(600):
                if time.monotonic() > deadline:
                    break
                try:
                    f.write(b"NOOP\r\n"); f.flush()
                    line = f.readline()
                except (ConnectionError, socket.timeout):
                    break
                if not line or line.startswith(b"421"):
                    break
                answered += 1
        check("case 5: junk commands end the session", answered < 300,
              f"closed after {answered} NOOPs")
        healthy("case 5", lab, ctx)

        # Case 6: four LOGIN literals of 25 MiB on plaintext 143.
        _, rss0 = usage(pid)
        conns, replies = [], []
        for _ in range(4):
            c = socket.create_connection((target["ip"], 143), timeout=10)
            c.recv(500)
            c.sendall(b"a LOGIN {26214400}\r\n")
            replies.append(c.recv(200))
            try:
                c.sendall(b"x" * (1 << 20))
            except ConnectionError:
                pass
            conns.append(c)
        _, rss1 = usage(pid)
        for c in conns:
            c.close()
        check("case 6: large literals before login refused",
              rss1 < 64 and all(not r.startswith(b"+") for r in replies),
              f"RSS {rss0:.1f} -> {rss1:.1f} MiB; first reply {replies[0][:50]!r}")
        healthy("case 6", lab, ctx)
    finally:
        labctl("down", "--variant", str(VARIANT), "--purge", check=False)
        subprocess.run(["rm", "-rf", tmp])
    print(f"{'all cases hold' if not FAILED else 'FAILED: ' + ', '.join(FAILED)}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
