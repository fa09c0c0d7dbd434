#!/bin/bash
# The classic lab's node program: configures one node from the lab folder
# that `labctl render` wrote (mounted at /lab: zones, CA, certificates, DKIM
# keys, lab.json with the mailboxes) and runs it in the foreground.
#   CLASSIC_ROLE=dns             bind9, authoritative for the rendered zones
#   CLASSIC_ROLE=mail DOMAIN=d   Postfix + Dovecot + OpenDKIM + policyd-spf
#                                + ClamAV (clamav-milter) + SpamAssassin (spamass-milter)
#   CLASSIC_FAULT=...            one misconfiguration for verify to find:
#     dkim-accept   OpenDKIM accepts bad signatures (On-BadSignature accept)
#     open-relay    permit_mynetworks with the whole lab network in mynetworks
#     wrong-spf     (dns) the first domain publishes "v=spf1 +all"
# The software and its settings are what the assignment recommends (section
# 2.5: Postfix, Dovecot, ClamAV, SpamAssassin), from Debian's packages only.
set -euo pipefail
log() { echo "classic[$CLASSIC_ROLE${DOMAIN:+ $DOMAIN}]: $*"; }
FAULT="${CLASSIC_FAULT:-}"

dns() {
    mkdir -p /etc/bind/zones /run/named
    chown bind:bind /run/named
    {
        echo 'options { directory "/var/cache/bind"; listen-on { any; }; listen-on-v6 { none; };'
        echo '  recursion no; allow-query { any; }; dnssec-validation no; };'
        for z in /lab/dns/*.zone; do
            f="$(basename "$z")"
            origin="${f%.zone}"
            [ "$origin" = root ] && origin=.
            cp "$z" "/etc/bind/zones/$f"
            echo "zone \"$origin\" { type master; file \"/etc/bind/zones/$f\"; };"
        done
    } > /etc/bind/named.conf
    if [ "$FAULT" = wrong-spf ]; then
        first="$(python3 -c 'import json; print(json.load(open("/lab/lab.json"))["servers"][0]["domain"])')"
        sed -i 's/"v=spf1 [^"]*"/"v=spf1 +all"/' "/etc/bind/zones/$first.zone"
        log "fault: $first publishes v=spf1 +all"
    fi
    chown -R bind:bind /etc/bind/zones
    log "named starting"
    exec named -g -u bind -c /etc/bind/named.conf
}

mail() {
    : "${DOMAIN:?DOMAIN is required for a mail node}"
    local host="mail.$DOMAIN" me dns_ip subnet
    me="$(python3 - "$DOMAIN" <<'PY'
import json, sys
lab = json.load(open("/lab/lab.json"))
s = next(s for s in lab["servers"] if s["domain"] == sys.argv[1])
print(s["ip"])
PY
)"
    dns_ip="$(python3 -c 'import json; print(json.load(open("/lab/lab.json"))["dns"]["ip"])')"
    subnet="$(python3 -c 'import json; print(json.load(open("/lab/lab.json"))["subnet"])')"
    echo "nameserver $dns_ip" > /etc/resolv.conf
    echo "$host" > /etc/mailname

    # Certificates and keys, readable by the daemons that use them.
    install -d -m 0755 /etc/classic
    install -m 0644 "/lab/certs/$host.crt" /etc/classic/cert.pem
    install -m 0600 "/lab/certs/$host.key" /etc/classic/key.pem
    install -m 0644 /lab/ca/ca.crt /etc/classic/ca.pem
    cat /etc/classic/ca.pem >> /etc/ssl/certs/ca-certificates.crt

    # Mailboxes: Dovecot passwd-file (the passwords of lab.json), Postfix virtual domain.
    id vmail >/dev/null 2>&1 || useradd -r -u 5000 -d /var/vmail -s /usr/sbin/nologin vmail
    install -d -o vmail -g vmail /var/vmail
    python3 - "$DOMAIN" <<'PY'
import json, sys
lab = json.load(open("/lab/lab.json"))
s = next(s for s in lab["servers"] if s["domain"] == sys.argv[1])
with open("/etc/dovecot/users", "w") as users, open("/etc/postfix/vmailbox", "w") as vmb:
    for m in s["mailboxes"]:
        a = m["address"]
        local, dom = a.split("@")
        users.write(f"{a}:{{PLAIN}}{m['password']}:5000:5000::/var/vmail/{dom}/{local}::\n")
        vmb.write(f"{a} ok\n")
PY
    chmod 0640 /etc/dovecot/users && chown root:dovecot /etc/dovecot/users

    dovecot_conf
    postfix_conf "$me" "$subnet"
    opendkim_conf "$dns_ip"
    clamav_conf
    spamassassin_conf
    spf_conf

    log "starting clamd, milters, spamd, dovecot, postfix"
    clamd
    clamav-milter
    spamd --daemonize --max-children=2 --listen=127.0.0.1:783 --username=debian-spamd \
        --pidfile=/run/spamd.pid
    spamass-milter -p inet:7358@127.0.0.1 -r 15 -m -f -d 127.0.0.1:783 2>/dev/null \
        || spamass-milter -p inet:7358@127.0.0.1 -r 15 -m -f
    opendkim -x /etc/opendkim.conf
    dovecot
    exec postfix start-fg
}

dovecot_conf() {
    cat > /etc/dovecot/dovecot.conf <<CONF
protocols = imap pop3 lmtp
listen = *
ssl = required
ssl_cert = </etc/classic/cert.pem
ssl_key = </etc/classic/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
mail_uid = 5000
mail_gid = 5000
first_valid_uid = 5000
log_path = /dev/stderr
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u /etc/dovecot/users
}
userdb {
  driver = passwd-file
  args = username_format=%u /etc/dovecot/users
}
namespace inbox {
  inbox = yes
  mailbox Junk {
    auto = subscribe
    special_use = \\Junk
  }
  mailbox Sent {
    auto = subscribe
    special_use = \\Sent
  }
}
service auth {
  unix_listener /var/spool/postfix/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
service lmtp {
  unix_listener /var/spool/postfix/private/dovecot-lmtp {
    mode = 0600
    user = postfix
    group = postfix
  }
}
protocol lmtp {
  mail_plugins = sieve
}
plugin {
  sieve_before = /etc/dovecot/junk.sieve
}
CONF
    cat > /etc/dovecot/junk.sieve <<'SIEVE'
require ["fileinto"];
if header :contains "X-Spam-Flag" "YES" {
  fileinto "Junk";
  stop;
}
SIEVE
    sievec /etc/dovecot/junk.sieve
}

postfix_conf() {
    local me="$1" subnet="$2" networks="127.0.0.0/8"
    if [ "$FAULT" = open-relay ]; then
        networks="127.0.0.0/8 $subnet"
        log "fault: mynetworks = $networks"
    fi
    postconf -e \
        "myhostname = mail.$DOMAIN" "mydomain = $DOMAIN" "myorigin = $DOMAIN" \
        "mydestination = localhost" "inet_interfaces = all" "inet_protocols = ipv4" \
        "mynetworks = $networks" "smtp_bind_address = $me" \
        "maillog_file = /dev/stdout" \
        "virtual_mailbox_domains = $DOMAIN" "virtual_mailbox_maps = texthash:/etc/postfix/vmailbox" \
        "virtual_transport = lmtp:unix:private/dovecot-lmtp" \
        "smtpd_tls_cert_file = /etc/classic/cert.pem" "smtpd_tls_key_file = /etc/classic/key.pem" \
        "smtpd_tls_security_level = may" "smtpd_tls_auth_only = yes" "smtpd_tls_received_header = yes" \
        "smtp_tls_security_level = verify" "smtp_tls_CAfile = /etc/classic/ca.pem" \
        "smtp_tls_verify_cert_match = hostname" \
        "smtpd_sasl_type = dovecot" "smtpd_sasl_path = private/auth" \
        "smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination" \
        "smtpd_recipient_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination check_policy_service unix:private/policyd-spf" \
        "policyd-spf_time_limit = 3600" \
        "milter_default_action = tempfail" "milter_protocol = 6" \
        "smtpd_milters = inet:127.0.0.1:8891 inet:127.0.0.1:7357 inet:127.0.0.1:7358" \
        "non_smtpd_milters = inet:127.0.0.1:8891" \
        "message_size_limit = 26214400" "compatibility_level = 3.6"
    # Submission (587, STARTTLS then AUTH) and submissions (465, implicit TLS).
    postconf -M -e "submission/inet=submission inet n - y - - smtpd"
    postconf -P -e "submission/inet/syslog_name=postfix/submission" \
        "submission/inet/smtpd_tls_security_level=encrypt" "submission/inet/smtpd_sasl_auth_enable=yes" \
        "submission/inet/smtpd_client_restrictions=permit_sasl_authenticated,reject" \
        "submission/inet/milter_macro_daemon_name=ORIGINATING"
    postconf -M -e "submissions/inet=submissions inet n - y - - smtpd"
    postconf -P -e "submissions/inet/syslog_name=postfix/submissions" \
        "submissions/inet/smtpd_tls_wrappermode=yes" "submissions/inet/smtpd_sasl_auth_enable=yes" \
        "submissions/inet/smtpd_client_restrictions=permit_sasl_authenticated,reject" \
        "submissions/inet/milter_macro_daemon_name=ORIGINATING"
    postconf -M -e "policyd-spf/unix=policyd-spf unix - n n - 0 spawn user=policyd-spf argv=/usr/bin/policyd-spf"
    postconf -M -e "postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd"
    # The chroot needs the resolver and the CA.
    mkdir -p /var/spool/postfix/etc
    cp /etc/resolv.conf /etc/hosts /etc/services /var/spool/postfix/etc/
}

opendkim_conf() {
    local dns_ip="$1" bad=reject
    [ "$FAULT" = dkim-accept ] && { bad=accept; log "fault: On-BadSignature accept"; }
    install -d -o opendkim -g opendkim /etc/opendkim /run/opendkim
    install -o opendkim -g opendkim -m 0600 "/lab/dkim/$DOMAIN.key" /etc/opendkim/key.pem
    cat > /etc/opendkim.conf <<CONF
Syslog no
Mode sv
Domain $DOMAIN
Selector lab
KeyFile /etc/opendkim/key.pem
Canonicalization relaxed/simple
Socket inet:8891@127.0.0.1
UserID opendkim
PidFile /run/opendkim/opendkim.pid
Nameservers $dns_ip
MacroList daemon_name|ORIGINATING
On-BadSignature $bad
On-NoSignature accept
AlwaysAddARHeader yes
AuthservID mail.$DOMAIN
CONF
}

clamav_conf() {
    install -d -o clamav -g clamav /run/clamav /var/lib/clamav
    # The EICAR test file only (no signature download in an offline lab):
    # its MD5 and size, hash signature format (ClamAV "Creating signatures").
    printf '44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n' > /var/lib/clamav/eicar.hdb
    chown clamav:clamav /var/lib/clamav/eicar.hdb
    cat > /etc/clamav/clamd.conf <<'CONF'
LocalSocket /run/clamav/clamd.ctl
LocalSocketMode 666
User clamav
DatabaseDirectory /var/lib/clamav
LogFile /var/log/classic-clamav.log
ScanArchive yes
ScanMail yes
Foreground no
CONF
    cat > /etc/clamav/clamav-milter.conf <<'CONF'
MilterSocket inet:7357@127.0.0.1
ClamdSocket unix:/run/clamav/clamd.ctl
User clamav
OnInfected Reject
RejectMsg Virus found: %v
AddHeader Replace
LogFile /var/log/classic-clamav.log
Foreground no
CONF
}

spamassassin_conf() {
    cat > /etc/spamassassin/local.cf <<'CONF'
required_score 5.0
report_safe 0
use_bayes 0
skip_rbl_checks 1
dns_available no
CONF
}

spf_conf() {
    cat > /etc/postfix-policyd-spf-python/policyd-spf.conf <<CONF
debugLevel = 1
TestOnly = 1
HELO_reject = False
Mail_From_reject = Fail
PermError_reject = False
TempError_Defer = False
skip_addresses = 127.0.0.0/8,::ffff:127.0.0.0/104,::1
Header_Type = AR
Authserv_Id = mail.$DOMAIN
CONF
}

case "${CLASSIC_ROLE:-}" in
    dns) dns ;;
    mail) mail ;;
    *) echo "CLASSIC_ROLE must be dns or mail" >&2; exit 2 ;;
esac
