"""Postfix side of scripts/bench-smtp.py: two Postfix instances from Debian's
package on loopback addresses of their own, each with a private
config_directory, queue_directory and data_directory under the bench's
temporary folder, started with `postfix -c DIR start` and stopped (also on
failure) by the bench's teardown.

Instance 1 plays domain 1's submission server: smtpd on <net>.1:10587 with
STARTTLS required (the lab certificate of mail.<domain 1>), AUTH PLAIN/LOGIN
through Cyrus SASL (sasldb, the same user and password as maillab) only
after TLS, the sender login check (reject_sender_login_mismatch, like
maillab's 553 5.7.1), relay only when authenticated, Date and Message-ID
added when missing, and DKIM signing by an OpenDKIM milter (the lab's
domain 1 key, selector lab, rsa-sha256, relaxed/relaxed, maillab's header
list). It relays everything to instance 2 (relayhost [<net>.2]:10025) over
STARTTLS with the certificate verified against the lab CA for
mail.<domain 2> (smtp_tls_security_level secure, match=mail.<domain 2>),
reusing TLS connections (smtp_tls_connection_reuse = yes through tlsproxy,
as maillab's relay pool does; Postfix's default is a new connection per
message).

Instance 2 plays domain 2's MX: smtpd on <net>.2:10025 offering STARTTLS
(the lab certificate of mail.<domain 2>), DKIM verification by a second
OpenDKIM milter (bad signature -> reject, like maillab's 550 5.7.20;
Authentication-Results added), virtual(8) delivery into one Maildir per lab
mailbox of domain 2.

What differs from maillab's path: no SPF check and no DMARC evaluation on
instance 2 (no policyd-spf or OpenDMARC), no spam or malware filter, no
Received-SPF header; OpenDKIM reads domain 1's public key from a
TestPublicKeys file holding the lab zone's TXT record instead of asking the
lab DNS (its libunbound cannot be pointed at the lab DNS's port reliably);
the next hop is a static relayhost instead of an MX lookup through the lab
DNS; no transcripts. Postfix's other defaults are kept (in_flow_delay,
slow-start destination concurrency up to 20, cleanup's fsync of the queue
file before 250, virtual(8)'s fsync of the Maildir file), except
smtpd_peername_lookup = no (no reverse DNS through the system resolver).
"""
import os, shutil, subprocess, sys, time

from benchlib import stop_proc

PF_DIR = "postfix"
SUB_PORT, MX_PORT = 10587, 10025

MASTER_CF = """\
{listen} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
tlsproxy  unix  -       -       n       -       0       tlsproxy
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def log(msg):
    print(f"  postfix: {msg}", flush=True)


def ensure_installed():
    """Debian's postfix, sasl2-bin (saslpasswd2) and opendkim, installed with apt
    when missing, preseeded to 'No configuration' (no system instance)."""
    need = [p for p in ("/usr/sbin/postfix", "/usr/sbin/saslpasswd2", "/usr/sbin/opendkim")
            if not os.path.exists(p)]
    if not need:
        return True
    if os.environ.get("BENCH_NO_INSTALL"):
        log(f"{', '.join(need)} missing and BENCH_NO_INSTALL is set")
        return False
    if os.geteuid() != 0:
        log("not installed, and installing needs root "
            "(apt-get install postfix sasl2-bin opendkim)")
        return False
    log("installing postfix, sasl2-bin and opendkim from Debian's packages")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["debconf-set-selections"], check=True, timeout=60,
                       input=b"postfix postfix/main_mailer_type select No configuration\n")
        r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends",
                            "postfix", "sasl2-bin", "opendkim"], env=env, timeout=600,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except (OSError, subprocess.SubprocessError) as e:
        log(f"install failed: {e}")
        return False
    if r.returncode != 0:
        log("apt-get install failed:\n" + r.stdout.decode(errors="replace")[-2000:])
        return False
    return True


def write_main(cfg, values):
    with open(os.path.join(cfg, "main.cf"), "w") as f:
        for k, v in values.items():
            f.write(f"{k} = {v}\n")


def instance(base, name, ip, port, domain, extra, down):
    """Creates and starts one instance; returns its folder and master pid."""
    root = os.path.join(base, name)
    cfg = os.path.join(root, "etc")
    os.makedirs(cfg, exist_ok=True)
    os.makedirs(os.path.join(root, "queue"))
    os.makedirs(os.path.join(root, "data"))
    shutil.chown(os.path.join(root, "data"), "postfix", "postfix")
    main = {
        "compatibility_level": "3.6",
        "queue_directory": os.path.join(root, "queue"),
        "data_directory": os.path.join(root, "data"),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        # Postfix only accepts addresses of an interface here and lo has
        # 127.0.0.1 alone; the listener's address is in master.cf instead
        # (Linux lets a socket bind any 127/8 address).
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv4",
        "smtp_bind_address": ip,
        "myhostname": f"mail.{domain}",
        "mydomain": domain,
        "myorigin": "$mydomain",
        "mydestination": "",
        "mynetworks": f"{ip}/32",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "smtpd_peername_lookup": "no",
        "smtputf8_enable": "no",
        "biff": "no",
        "maillog_file": os.path.join(root, "maillog"),
        "maillog_file_prefixes": root,
        "smtpd_tls_session_cache_database": f"btree:{root}/data/smtpd_scache",
        "smtp_tls_session_cache_database": f"btree:{root}/data/smtp_scache",
    }
    main.update(extra)
    write_main(cfg, main)
    with open(os.path.join(cfg, "master.cf"), "w") as f:
        f.write(MASTER_CF.format(listen=f"{ip}:{port}"))
    r = subprocess.run(["postfix", "-c", cfg, "start"], timeout=60,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    down.add(lambda: stop(cfg, root))
    if r.returncode != 0:
        # Postfix writes its fatal errors to stderr only when it is a tty.
        why = subprocess.run(["script", "-qec", f"postfix -c {cfg} check", "/dev/null"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        raise RuntimeError(f"postfix -c {cfg} start failed: "
                           + why.stdout.decode(errors="replace").strip())
    pidfile = os.path.join(root, "queue", "pid", "master.pid")
    end = time.time() + 15
    while time.time() < end and not os.path.exists(pidfile):
        time.sleep(0.05)
    with open(pidfile) as f:
        return root, int(f.read().split()[0])


def opendkim(base, name, settings, down):
    """Starts one OpenDKIM milter in the foreground on a Unix socket (as
    Debian's package does: local:/run/opendkim/opendkim.sock; over TCP the
    milter exchange meets Nagle's algorithm and delayed ACKs); returns its
    pid and the socket."""
    conf = os.path.join(base, f"{name}.conf")
    sock = os.path.join(base, f"{name}.sock")
    with open(conf, "w") as f:
        for k, v in {"Syslog": "no", "Background": "no", "Socket": f"local:{sock}",
                     "UMask": "000",
                     "Canonicalization": "relaxed/relaxed",
                     # the key lies under the bench folder in /tmp (sticky, world-writable)
                     "RequireSafeKeys": "no", **settings}.items():
            f.write(f"{k} {v}\n")
    log_file = open(os.path.join(base, f"{name}.log"), "w")
    p = subprocess.Popen(["opendkim", "-f", "-x", conf], stdout=log_file, stderr=log_file)

    down.add(lambda: stop_proc(p))
    end = time.time() + 15
    while time.time() < end and not os.path.exists(sock) and p.poll() is None:
        time.sleep(0.05)
    if not os.path.exists(sock) or p.poll() is not None:
        raise RuntimeError(f"opendkim {name} did not start, see {base}/{name}.log")
    return p.pid, sock


def stop(cfg, root):
    """`postfix stop`, then abort, then SIGKILL of this instance's master."""
    subprocess.run(["postfix", "-c", cfg, "stop"], timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pidfile = os.path.join(root, "queue", "pid", "master.pid")
    try:
        with open(pidfile) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError):
        return
    for _ in range(100):  # 10 s at most
        if not os.path.exists(f"/proc/{pid}"):
            return
        time.sleep(0.1)
    subprocess.run(["postfix", "-c", cfg, "abort"], timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    if os.path.exists(f"/proc/{pid}"):
        os.kill(pid, 9)


def postfix_lab(tmp, lab_dir, lab, down):
    """Sets up and starts both instances; returns the load target or None."""
    from importlib import import_module
    bench = import_module("__main__")
    if not ensure_installed():
        return None
    net = os.environ.get("BENCH_PF_NET", f"127.212.{os.getpid() % 250}")
    ip1, ip2 = f"{net}.1", f"{net}.2"
    s1, s2 = lab["servers"]
    d1, d2 = s1["domain"], s2["domain"]
    user, password = s1["mailboxes"][0]["address"], s1["mailboxes"][0]["password"]
    rcpts = [m["address"] for m in s2["mailboxes"]]
    ca = os.path.join(lab_dir, "ca", "ca.crt")
    certs = os.path.join(lab_dir, "certs")
    base = os.path.join(tmp, PF_DIR)
    os.makedirs(base)
    # Postfix's daemons run as postfix/nobody: they must reach their folders
    # and the lab certificates (the keys are read by the root-owned master's
    # children before they drop privileges... smtpd reads them as root).
    for d in (tmp, lab_dir, certs, base):
        os.chmod(d, 0o755)
    # Instance 1: Cyrus SASL with a private sasldb. Debian's Postfix reads
    # the SASL application config from $config_directory/sasl/smtpd.conf.
    sasl = os.path.join(base, "submission", "etc", "sasl")
    os.makedirs(sasl)
    sasldb = os.path.join(sasl, "sasldb2")
    local, realm = user.split("@")
    subprocess.run(["saslpasswd2", "-p", "-c", "-f", sasldb, "-u", realm, local],
                   input=password.encode(), check=True, timeout=30)
    shutil.chown(sasldb, "postfix", "postfix")
    os.chmod(sasldb, 0o640)
    os.chmod(sasl, 0o755)
    with open(os.path.join(sasl, "smtpd.conf"), "w") as f:
        f.write(f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\n"
                f"mech_list: PLAIN LOGIN\nsasldb_path: {sasldb}\n")
    # Instance 2's Maildirs belong to nobody.
    mail = os.path.join(base, "mx", "mail")
    os.makedirs(mail)
    shutil.chown(mail, "nobody", "nogroup")
    vmaps = ", ".join(f"{r}={r}/" for r in rcpts)
    # OpenDKIM's resolver (libunbound) cannot be pointed at the lab DNS on
    # its port (ResolverConfiguration files are parsed per thread and the
    # parse breaks under load), so the verifier reads the lab zone's DKIM
    # TXT record from a TestPublicKeys file instead of asking the DNS.
    keys = os.path.join(base, "dkim-public-keys")
    with open(os.path.join(lab_dir, "dkim", f"{d1}.txt")) as src, open(keys, "w") as f:
        f.write(f"lab._domainkey.{d1} {src.read().strip()}\n")
    signed = "From,To,Cc,Subject,Date,Message-ID,Reply-To,In-Reply-To,References," \
             "MIME-Version,Content-Type,Content-Transfer-Encoding"
    milter = {"milter_default_action": "tempfail", "milter_protocol": "6"}
    try:
        sign_pid, sign_sock = opendkim(base, "opendkim-sign", {
            "Mode": "s", "Domain": d1, "Selector": "lab",
            "KeyFile": os.path.join(lab_dir, "dkim", f"{d1}.key"),
            "SignHeaders": signed, "InternalHosts": "127.0.0.1",
        }, down)
        verify_pid, verify_sock = opendkim(base, "opendkim-verify", {
            "Mode": "v", "AuthservID": f"mail.{d2}",
            "TestPublicKeys": keys,
            "On-BadSignature": "reject", "On-DNSError": "tempfail",
        }, down)
        mx_root, mx_pid = instance(base, "mx", ip2, MX_PORT, d2, {
            "smtpd_tls_chain_files": f"{certs}/mail.{d2}.key, {certs}/mail.{d2}.crt",
            "smtpd_tls_security_level": "may",
            "virtual_mailbox_domains": d2,
            "virtual_mailbox_base": mail,
            "virtual_mailbox_maps": f"inline:{{ {vmaps} }}",
            "virtual_uid_maps": "static:65534",
            "virtual_gid_maps": "static:65534",
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "smtpd_milters": f"unix:{verify_sock}",
            **milter,
        }, down)
        sub_root, sub_pid = instance(base, "submission", ip1, SUB_PORT, d1, {
            "smtpd_tls_chain_files": f"{certs}/mail.{d1}.key, {certs}/mail.{d1}.crt",
            "smtpd_tls_security_level": "encrypt",
            "smtpd_tls_auth_only": "yes",
            "smtpd_sasl_auth_enable": "yes",
            "smtpd_sasl_type": "cyrus",
            "smtpd_sasl_path": "smtpd",
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_sender_login_maps": f"inline:{{ {user}={user} }}",
            "smtpd_sender_restrictions": "reject_sender_login_mismatch",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
            "smtpd_recipient_restrictions": "",
            "relayhost": f"[{ip2}]:{MX_PORT}",
            "smtp_tls_security_level": "secure",
            "smtp_tls_CAfile": ca,
            "smtp_tls_policy_maps":
                f"inline:{{ {{[{ip2}]:{MX_PORT} = secure match=mail.{d2}}} }}",
            "smtp_tls_connection_reuse": "yes",
            # Like maillab's submission: Date and Message-ID added when missing.
            "always_add_missing_headers": "yes",
            "smtpd_milters": f"unix:{sign_sock}",
            **milter,
        }, down)
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
        log(f"setup failed: {e}")
        return None
    for ip, port in ((ip2, MX_PORT), (ip1, SUB_PORT)):
        if not bench.wait_tcp(ip, port):
            log(f"not listening on {ip}:{port}; see {base}/*/maillog")
            return None
    log(f"instances up: submission {ip1}:{SUB_PORT} -> MX {ip2}:{MX_PORT} (Postfix "
        + subprocess.run(["postconf", "-h", "-d", "mail_version"], stdout=subprocess.PIPE,
                         text=True).stdout.strip() + ")")
    return {
        "ip": ip1, "port": SUB_PORT, "tls_name": f"mail.{d1}", "ca": ca,
        "user": user, "password": password, "rcpts": rcpts,
        "maildirs": [os.path.join(mail, r, "new") for r in rcpts],
        "cpu": {
            "submission": lambda: bench.tree_cpu(sub_pid),
            "opendkim-sign": lambda: bench.proc_cpu(sign_pid),
            "mx": lambda: bench.tree_cpu(mx_pid),
            "opendkim-verify": lambda: bench.proc_cpu(verify_pid),
        },
        "logs": [os.path.join(sub_root, "maillog"), os.path.join(mx_root, "maillog")],
    }
