//! Message authentication of inbound mail and DKIM signing of submitted mail:
//! SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) with `mail-auth`, and the
//! trace header fields that record the results: `Authentication-Results`
//! (RFC 8601) and `Received-SPF` (RFC 7208 §9.1).
//!
//! Every DNS lookup goes to the lab DNS server of the config
//! ([`crate::config::Dns::server`]) and nowhere else: the resolver is built
//! from that one address, never from `/etc/resolv.conf` or the hosts file.
//!
//! Non-features: ARC, iprev, DMARC aggregate/failure report sending (the
//! DMARC result is evaluated and recorded, reports are not mailed).

mod result;
mod sign;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy as DmarcPolicy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    ReceivedSpf, SpfOutput,
};

pub use result::{AuthResult, UnknownResult};
pub use sign::{Signer, SignerError};

/// The resolver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("DNS resolver for {server}: {source}")]
pub struct ResolverError {
    /// The lab DNS server it was to ask.
    pub server: SocketAddr,
    /// What hickory said.
    pub source: mail_auth::hickory_resolver::net::NetError,
}

/// Builds the one resolver of the server: only `server` is asked, over UDP
/// and TCP, with no hosts file and no search domains. Queries leave from
/// `source` (the server's own address, unless unspecified), so the lab DNS's
/// query log tells which server asked, in the local runtime too.
pub fn resolver(server: SocketAddr, source: IpAddr) -> Result<MessageAuthenticator, ResolverError> {
    let bind_addr = (!source.is_unspecified() && source.is_ipv4() == server.is_ipv4())
        .then(|| SocketAddr::new(source, 0));
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    udp.bind_addr = bind_addr;
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    tcp.bind_addr = bind_addr;
    let mut ns = NameServerConfig::udp_and_tcp(server.ip());
    ns.connections = vec![udp, tcp];
    let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
    let mut opts = ResolverOpts::default();
    opts.use_hosts_file = ResolveHosts::Never;
    opts.timeout = Duration::from_secs(3);
    opts.attempts = 2;
    opts.ndots = 0;
    MessageAuthenticator::new(config, opts).map_err(|source| ResolverError { server, source })
}

/// The SPF check of one transaction (RFC 7208 §2.4 MAIL FROM identity,
/// §2.3 HELO identity when the reverse-path is null).
#[derive(Debug, Clone)]
pub struct SpfCheck {
    /// The result.
    pub output: SpfOutput,
    /// The client address checked.
    pub ip: IpAddr,
    /// The HELO/EHLO name.
    pub helo: String,
    /// The envelope sender (empty: null sender, the HELO identity was checked).
    pub mail_from: String,
}

impl SpfCheck {
    /// The result (RFC 8601 §2.7.2).
    pub fn result(&self) -> AuthResult {
        self.output.result().into()
    }
}

/// Runs SPF for a MAIL FROM: the MAIL FROM identity, or the HELO identity
/// for the null reverse-path (RFC 7208 §2.4).
pub async fn check_spf(
    auth: &MessageAuthenticator,
    hostname: &str,
    ip: IpAddr,
    helo: &str,
    mail_from: &str,
) -> SpfCheck {
    let output = if mail_from.is_empty() {
        auth.verify_spf(SpfParameters::verify_ehlo(ip, helo, hostname))
            .await
    } else {
        auth.verify_spf(SpfParameters::verify_mail_from(
            ip, helo, hostname, mail_from,
        ))
        .await
    };
    SpfCheck {
        output,
        ip,
        helo: helo.to_string(),
        mail_from: mail_from.to_string(),
    }
}

/// What DKIM found in a message (RFC 6376 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimVerdict {
    /// No DKIM-Signature header field.
    NoSignature,
    /// At least one signature verified.
    Pass,
    /// Signatures present, none verified, at least one for a temporary reason.
    TempError,
    /// Signatures present, none verified.
    Fail,
}

/// The results of the checks after DATA.
#[derive(Debug, Clone)]
pub struct MessageResults {
    /// The DKIM verdict over all signatures.
    pub dkim: DkimVerdict,
    /// The DKIM result (RFC 8601 §2.7.1).
    pub dkim_result: AuthResult,
    /// The DMARC result (RFC 7489 §11.2).
    pub dmarc_result: AuthResult,
    /// The domain publishes `p=reject` and DMARC failed.
    pub dmarc_reject: bool,
    /// The domain publishes `p=quarantine` and DMARC failed.
    pub dmarc_quarantine: bool,
    /// The `Authentication-Results` header field (with CRLF).
    pub authentication_results: String,
    /// The `Received-SPF` header field (with CRLF).
    pub received_spf: String,
}

/// Verifies DKIM and evaluates DMARC for a received message and writes the
/// trace header fields. `verify_dkim` false skips DKIM (result `none`).
pub async fn check_message(
    auth: &MessageAuthenticator,
    hostname: &str,
    message: &[u8],
    spf: &SpfCheck,
    verify_dkim: bool,
) -> Option<MessageResults> {
    let parsed = AuthenticatedMessage::parse(message)?;
    let dkim = if verify_dkim {
        auth.verify_dkim(&parsed).await
    } else {
        Vec::new()
    };
    let verdict = if dkim.is_empty() {
        DkimVerdict::NoSignature
    } else if dkim.iter().any(|d| d.result() == &DkimResult::Pass) {
        DkimVerdict::Pass
    } else if dkim
        .iter()
        .any(|d| matches!(d.result(), DkimResult::TempError(_)))
    {
        DkimVerdict::TempError
    } else {
        DkimVerdict::Fail
    };
    let dkim_result = match verdict {
        DkimVerdict::NoSignature => AuthResult::None,
        DkimVerdict::Pass => AuthResult::Pass,
        DkimVerdict::TempError => AuthResult::TempError,
        DkimVerdict::Fail => dkim
            .first()
            .map_or(AuthResult::Fail, |d| AuthResult::from(d.result())),
    };
    // RFC 7489 §4.1: the RFC5321.MailFrom domain for SPF alignment; the
    // HELO domain stands in for the null sender (RFC 7489 §4.1 note).
    let mail_from_domain = spf
        .mail_from
        .rsplit_once('@')
        .map_or(spf.helo.as_str(), |(_, d)| d)
        .to_string();
    let dmarc = auth
        .verify_dmarc(DmarcParameters::new(
            &parsed,
            &dkim,
            &mail_from_domain,
            &spf.output,
        ))
        .await;
    let dmarc_result = dmarc.result();
    let failed = matches!(dmarc_result, DmarcResult::Fail(_));
    let header_from = parsed.from.first().cloned().unwrap_or_default();
    let mut ar = AuthenticationResults::new(hostname).with_spf_mailfrom_result(
        &spf.output,
        spf.ip,
        &spf.mail_from,
        &spf.helo,
    );
    ar = ar.with_dkim_results(&dkim, &header_from);
    let mut authentication_results = ar.with_dmarc_result(&dmarc).to_header();
    if dkim.is_empty() {
        // RFC 8601 §2.7.1: say "dkim=none" explicitly rather than omitting it.
        authentication_results = insert_before_dmarc(&authentication_results, "dkim=none");
    }
    let received_spf =
        ReceivedSpf::new(&spf.output, spf.ip, &spf.helo, &spf.mail_from, hostname).to_header();
    Some(MessageResults {
        dkim: verdict,
        dkim_result,
        dmarc_result: AuthResult::from(&dmarc_result),
        dmarc_reject: failed && dmarc.policy() == DmarcPolicy::Reject,
        dmarc_quarantine: failed && dmarc.policy() == DmarcPolicy::Quarantine,
        authentication_results,
        received_spf,
    })
}

fn insert_before_dmarc(header: &str, method: &str) -> String {
    match header.find(";\r\n\tdmarc=") {
        Some(pos) => format!("{};\r\n\t{method}{}", &header[..pos], &header[pos..]),
        None => header.to_string(),
    }
}
