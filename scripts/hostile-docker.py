#!/usr/bin/env python3
"""Issue 13's hostile cases replayed against a Docker lab, as a student on
the host would send them (every client arrives from the bridge gateway), with
the figures the issue asks for: after each case both mail containers still
run with no restart and no OOM kill, and a fresh client is greeted on 25 and
993 within 3 s; the server's CPU time (case 3) and RSS (case 6) come from
/proc/<container pid>/ on the host.

Before the cases it reports the idle memory of each mail container after
`up` and `verify` (VmRSS of serve-mail, the cgroup's memory usage and its
anonymous part). After them, the combined load: four SMTP clients each
sending a message of the configured maximum size and four IMAPS clients each
sending an APPEND literal of the maximum literal size, all at once, with the
container's memory sampled from its cgroup (v2, or v1's memory controller) on the host; it must stay
under half the container's memory limit.

Usage: scripts/hostile-docker.py [LABCTL] [VARIANT]   (root, Docker running)

It brings up its own lab (instance `hostile`, subnet 10.81.N.0/24) and
removes it (down --purge) at the end, also on failure. Every loop is bounded
in count and time. Exit 0 when every case holds, 1 otherwise.
"""
import glob, imaplib, json, os, re, socket, ssl, subprocess, sys, tempfile, threading, time

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


class Cgroup:
    """The memory cgroup of a process seen from the host: cgroup v2
    (memory.current, memory.peak, anon of memory.stat) or the v1 memory
    controller (memory.usage_in_bytes, memory.max_usage_in_bytes, rss of
    memory.stat). Usage includes the page cache; anon/rss does not."""

    def __init__(self, pid):
        lines = [l.strip().split(":", 2) for l in open(f"/proc/{pid}/cgroup")]
        v1 = next((p for _, c, p in lines if "memory" in c.split(",")), None)
        v2 = next((p for n, c, p in lines if n == "0" and c == ""), None)
        if v2 is not None and os.path.exists(f"/sys/fs/cgroup{v2}/memory.current"):
            self.dir, self.v2 = f"/sys/fs/cgroup{v2}", True
        elif v1 is not None and os.path.exists(f"/sys/fs/cgroup/memory{v1}/memory.usage_in_bytes"):
            self.dir, self.v2 = f"/sys/fs/cgroup/memory{v1}", False
        else:
            raise RuntimeError(f"no memory cgroup found for pid {pid}: {lines}")

    def read(self, name):
        return int(open(f"{self.dir}/{name}").read().split()[0])

    def memory(self):
        """(usage, anonymous) in MiB."""
        usage = self.read("memory.current" if self.v2 else "memory.usage_in_bytes")
        key = "anon " if self.v2 else "rss "
        anon = next(int(l.split()[1]) for l in open(f"{self.dir}/memory.stat") if l.startswith(key))
        return usage / 2**20, anon / 2**20

    def reset_peak(self):
        """v1 resets its peak on a write; v2's memory.peak is since start."""
        if not self.v2:
            with open(f"{self.dir}/memory.max_usage_in_bytes", "w") as f:
                f.write("0")

    def peak(self):
        try:
            return self.read("memory.peak" if self.v2 else "memory.max_usage_in_bytes") / 2**20
        except OSError:
            return float("nan")


def idle_memory(lab):
    """Idle memory of each mail container (run after up and verify)."""
    for s in lab["servers"]:
        pid = container_state(s["container"])[3]
        _, rss = usage(pid)
        current, anon = Cgroup(pid).memory()
        threads = len(os.listdir(f"/proc/{pid}/task"))
        print(f"idle {s['container']}: serve-mail VmRSS {rss:.1f} MiB, {threads} threads; "
              f"container memory usage {current:.1f} MiB (anon {anon:.1f} MiB)", flush=True)


def limit_of(lab_dir, server, key):
    text = open(os.path.join(lab_dir, "servers", server["hostname"], "config.yaml")).read()
    return int(re.search(rf"^  {key}: (\d+)$", text, re.M).group(1))


def combined_load(lab, lab_dir, ctx):
    """Four maximum-size messages on 25 and four maximum-size APPEND
    literals on 993 at once; the container's memory sampled meanwhile."""
    target = lab["servers"][1]
    name, pid = target["container"], container_state(target["container"])[3]
    limit = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True,
                                      text=True, check=True).stdout)[0]["HostConfig"]["Memory"]
    cg = Cgroup(pid)
    max_message = limit_of(lab_dir, target, "max_message_size")
    max_literal = limit_of(lab_dir, target, "max_literal_size")
    rcpt = target["mailboxes"][0]["address"]
    line = b"m" * 78 + b"\r\n"

    def body(subject, size):
        head = (f"From: load@x.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                f"Message-ID: <{subject}@x.test>\r\n\r\n").encode()
        return head + line * ((size - len(head)) // len(line))

    smtp_msg = body("load-smtp", max_message - 100)
    literal = body("load-imap", max_literal)
    literal += b"x" * (max_literal - len(literal))
    assert len(literal) == max_literal
    cg.reset_peak()
    start = threading.Barrier(9)
    results = {}

    def smtp(i):
        try:
            with socket.create_connection((target["ip"], 25), timeout=120) as c:
                f = c.makefile("rwb")
                f.readline()
                for cmd in ["EHLO load.test", "MAIL FROM:<>", f"RCPT TO:<{rcpt}>", "DATA"]:
                    f.write(cmd.encode() + b"\r\n"); f.flush()
                    while True:
                        r = f.readline()
                        if r[3:4] != b"-":
                            break
                start.wait()
                f.write(smtp_msg + b".\r\n"); f.flush()
                results[f"smtp{i}"] = f.readline().strip().decode(errors="replace")[:60]
        except Exception as e:  # reported, the check below fails on it
            results[f"smtp{i}"] = f"error {e!r}"

    def imap(i):
        try:
            m = imaps_login(target, ctx)
            start.wait()
            c = m.sock
            c.sendall(f"L{i} APPEND INBOX {{{max_literal}}}\r\n".encode())
            cont = m.readline()
            if cont.startswith(b"+"):
                c.sendall(literal + b"\r\n")
            reply = cont
            while not reply.startswith(f"L{i} ".encode()) and reply:
                reply = m.readline()
            results[f"imap{i}"] = reply.strip().decode(errors="replace")[:60]
            m.logout()
        except Exception as e:
            results[f"imap{i}"] = f"error {e!r}"

    threads = [threading.Thread(target=smtp, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=imap, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    peak = {"current": 0.0, "anon": 0.0, "rss": 0.0}
    start.wait()
    began = time.monotonic()
    while any(th.is_alive() for th in threads) and time.monotonic() - began < 300:
        current, anon = cg.memory()
        _, rss = usage(pid)
        peak = {"current": max(peak["current"], current), "anon": max(peak["anon"], anon),
                "rss": max(peak["rss"], rss)}
        time.sleep(0.05)
    for th in threads:
        th.join(timeout=30)
    took = time.monotonic() - began
    cg_peak = cg.peak()
    mib = limit / 2**20
    print(f"combined load: {len(smtp_msg) / 2**20:.1f} MiB x 4 on 25, {max_literal / 2**20:.1f} MiB "
          f"x 4 on 993, {took:.1f}s: {json.dumps(results, sort_keys=True)}", flush=True)
    check("combined load: container well under its memory limit",
          peak["anon"] < mib / 2 and peak["rss"] < mib / 2
          and all(not v.startswith("error") for v in results.values()),
          f"peak serve-mail RSS {peak['rss']:.1f} MiB, container anon {peak['anon']:.1f} MiB, "
          f"usage {peak['current']:.1f} MiB sampled, {cg_peak:.1f} MiB peak by the cgroup (page cache "
          f"included; v2's since start); "
          f"limit {mib:.0f} MiB")


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
        verify = labctl("verify", "--dir", lab_dir, check=False)
        print(f"verify: exit {verify.returncode}", flush=True)
        time.sleep(15)  # idle: the blocking pool's threads end after 10 s
        idle_memory(lab)

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

        combined_load(lab, lab_dir, ctx)
        healthy("combined load", lab, ctx)
    finally:
        labctl("down", "--variant", str(VARIANT), "--purge", check=False)
        subprocess.run(["rm", "-rf", tmp])
    print(f"{'all cases hold' if not FAILED else 'FAILED: ' + ', '.join(FAILED)}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
