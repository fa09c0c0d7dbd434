//! The server's configuration: the `config.yaml` that `labctl render` writes
//! into `servers/mail.<domain>/` of the lab directory.
//!
//! This file is the contract between the orchestrator and the server: nothing
//! is configured by code inside the containers. Relative paths are resolved
//! against the folder that holds the config file, so one rendered lab
//! directory works mounted at `/lab` in a container and in place on the host.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::service::Ports;

/// Default SMTP line limit: RFC 5321 §4.5.3.1.6 (text line, 1000 octets with CRLF).
pub const DEFAULT_MAX_LINE_LENGTH: usize = 1000;
/// Default message size limit (advertised with SIZE, RFC 1870).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 25 * 1024 * 1024;
/// Default simultaneous connections per client address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 32;
/// Default command timeout: RFC 5321 §4.5.3.2.7 asks for at least 5 minutes.
pub const DEFAULT_COMMAND_TIMEOUT_SECS: u64 = 300;
/// Default failed logins per client address per minute before AUTH is refused.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 5;
/// Default IMAP literal size limit.
pub const DEFAULT_MAX_LITERAL_SIZE: usize = 25 * 1024 * 1024;
/// Default per-mailbox quota (all folders): 256 MiB.
pub const DEFAULT_MAILBOX_QUOTA: u64 = 256 * 1024 * 1024;
/// Default simultaneous connections of the whole server.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default TLS handshake timeout (implicit TLS, STARTTLS, STLS).
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
/// Default idle time before login (IMAP, POP3), as Dovecot's `login_timeout`.
pub const DEFAULT_LOGIN_TIMEOUT_SECS: u64 = 60;
/// Default time to write one reply before the client is given up.
pub const DEFAULT_WRITE_TIMEOUT_SECS: u64 = 60;
/// Default junk commands (NOOP, RSET, VRFY) before each counts as an error
/// (Postfix `smtpd_junk_command_limit`).
pub const DEFAULT_JUNK_COMMAND_LIMIT: u32 = 100;
/// Default errors after which each error reply is delayed (Postfix
/// `smtpd_soft_error_limit`).
pub const DEFAULT_SOFT_ERROR_LIMIT: u32 = 10;
/// Default errors after which the session is closed (Postfix
/// `smtpd_hard_error_limit`; IMAP `BAD`, POP3 `-ERR`).
pub const DEFAULT_HARD_ERROR_LIMIT: u32 = 20;
/// Default delay of an error reply past the soft limit (Postfix's
/// `smtpd_error_sleep_time` is 1 s; smaller so tests stay fast).
pub const DEFAULT_ERROR_DELAY_MS: u64 = 250;
/// Default largest IMAP literal before login (Dovecot refuses large
/// pre-login input).
pub const DEFAULT_MAX_PRELOGIN_LITERAL_SIZE: usize = 8 * 1024;
/// Default largest IMAP command (line and literals) before login.
pub const DEFAULT_MAX_PRELOGIN_COMMAND_SIZE: usize = 64 * 1024;
/// Default bound on bytes held by all sessions together (messages being
/// received, literals): well under a container's 256 MiB.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 96 * 1024 * 1024;
/// Default first auth penalty (Dovecot's auth penalty starts at 2 s).
pub const DEFAULT_AUTH_FAILURE_DELAY_MS: u64 = 1000;
/// Default longest auth penalty (Dovecot's `AUTH_PENALTY_MAX_SECS` is 15).
pub const DEFAULT_AUTH_FAILURE_DELAY_MAX_MS: u64 = 15_000;
/// Default transcript bytes written per session.
pub const DEFAULT_TRANSCRIPT_SESSION_MAX_BYTES: u64 = 1024 * 1024;
/// Default size at which a protocol's transcript file is rotated.
pub const DEFAULT_TRANSCRIPT_FILE_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Default rotated transcript files kept per protocol.
pub const DEFAULT_TRANSCRIPT_FILES_KEPT: u32 = 3;

/// Errors of loading a configuration file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde_yaml said (field and line).
        message: String,
    },
}

/// The whole server configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server's host name, `mail.<domain>` (EHLO name, certificate name).
    pub hostname: String,
    /// The mail domain this server is the final destination for.
    pub domain: String,
    /// Where to listen.
    pub listen: Listen,
    /// Certificate, key and the lab CA.
    pub tls: Tls,
    /// The lab DNS server: every lookup goes there and nowhere else.
    pub dns: Dns,
    /// Data folder (Maildir, queue, transcripts, spam model). Relative to the config file.
    pub data_dir: PathBuf,
    /// Local mailboxes.
    pub mailboxes: Vec<Mailbox>,
    /// DKIM signing of submitted mail.
    pub dkim: Dkim,
    /// What to do with the results of SPF, DKIM and DMARC on inbound mail.
    pub policy: Policy,
    /// Outbound delivery (the queue).
    pub relay: Relay,
    /// Malware scanner.
    pub scanner: Scanner,
    /// Spam filter.
    pub spam: Spam,
    /// Protocol limits.
    #[serde(default)]
    pub limits: Limits,
    /// Where passwords may be sent.
    #[serde(default)]
    pub auth: Auth,
}

/// Where passwords may be sent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Accept SMTP AUTH, IMAP LOGIN/AUTHENTICATE and POP3 USER/PASS on a
    /// connection without TLS (Postfix `smtpd_tls_auth_only = no`, Dovecot
    /// `disable_plaintext_auth = no`). Off in every rendered lab (RFC 8314
    /// §3, RFC 4954 §4); it exists to show why, and `verify` fails R5 with it on.
    #[serde(default)]
    pub allow_plaintext: bool,
}

impl Config {
    /// Whether a password may be taken on this connection.
    pub fn password_allowed(&self, tls: bool) -> bool {
        tls || self.auth.allow_plaintext
    }
}

/// Listening address and ports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Address the listeners bind to and outbound connections leave from.
    pub address: IpAddr,
    /// The port of each service; 0 disables that listener.
    pub ports: Ports,
}

/// TLS material, PEM files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Server certificate for `hostname`.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The lab CA, the only trust anchor for outbound TLS.
    pub ca: PathBuf,
}

/// The lab DNS server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Address and port of the lab's authoritative DNS server.
    pub server: SocketAddr,
}

/// One mailbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mailbox {
    /// The full address, `user@domain`; also the login name.
    pub address: String,
    /// Argon2 PHC string of the password.
    pub password_hash: String,
}

/// DKIM signing (RFC 6376).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dkim {
    /// Selector: the key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: DkimAlgorithm,
    /// Private key, PEM (PKCS#1 or PKCS#8).
    pub key: PathBuf,
    /// Header fields to sign.
    pub headers: Vec<String>,
}

/// A DKIM signing algorithm (RFC 6376 §3.3; ed25519-sha256: RFC 8463 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DkimAlgorithm {
    /// RSA with SHA-256 (RFC 6376 §3.3.1).
    #[serde(rename = "rsa-sha256")]
    RsaSha256,
    /// Ed25519 with SHA-256 (RFC 8463 §3).
    #[serde(rename = "ed25519-sha256")]
    Ed25519Sha256,
}

/// What to do when a check fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Refuse with a permanent error (5xx).
    Reject,
    /// Refuse with a temporary error (4xx).
    Tempfail,
    /// Accept, add headers and raise the spam score.
    Mark,
    /// Accept as if the check had passed (only recorded in headers).
    Accept,
}

/// Inbound authentication policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// SPF (RFC 7208) `fail` result.
    pub spf_fail: Action,
    /// SPF `softfail` result.
    pub spf_softfail: Action,
    /// SPF `temperror` result.
    pub spf_temperror: Action,
    /// Verify DKIM signatures on inbound mail at all.
    pub dkim_verify: bool,
    /// Signatures present and none valid (RFC 6376 §6.1).
    pub dkim_invalid: Action,
    /// Act on a DMARC (RFC 7489) `p=reject`/`p=quarantine` of the sender's domain.
    pub dmarc_enforce: bool,
}

/// Outbound delivery through the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    /// The port MX hosts listen on (25 in Docker; the port map's in the local runtime).
    pub port: u16,
    /// Refuse to deliver when the peer does not offer STARTTLS.
    pub require_tls: bool,
    /// Verify the peer certificate against the lab CA for the MX host name.
    pub verify_certificate: bool,
    /// Delays between attempts, in seconds; the last one repeats.
    pub retry_schedule_secs: Vec<u64>,
    /// Give up (and send a DSN) after this many seconds in the queue.
    pub max_age_secs: u64,
}

/// Malware scanner.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scanner {
    /// `builtin` (the rules shipped in the binary plus `rules_dir`), `clamd://ADDR:PORT`, or `off`.
    pub engine: ScannerEngine,
    /// Extra rule files from the lab directory (may be absent).
    #[serde(default)]
    pub rules_dir: Option<PathBuf>,
    /// The builtin engine's rules compiled by another process (not in the
    /// file: `labctl serve-mail` fills it in); compiled at start when absent.
    #[serde(skip)]
    pub precompiled: Option<PrecompiledRules>,
}

/// Which engine scans for malware, written `builtin`, `clamd://IP:PORT` or
/// `off` in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ScannerEngine {
    /// The yara-x rules shipped in the binary plus the lab's `rules_dir`.
    Builtin,
    /// A ClamAV daemon at this address (an IP: a host name would be
    /// resolved around the lab DNS, so it is refused).
    Clamd(SocketAddr),
    /// No scanner.
    Off,
}

/// A `scanner.engine` that is none of the three forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Neither `builtin`, `off` nor a `clamd://` URL.
    #[error("scanner engine {0:?}: expected builtin, off or clamd://IP:PORT")]
    Unknown(String),
    /// A `clamd://` URL whose address is no `IP:PORT`.
    #[error(
        "scanner engine {0:?}: clamd address must be IP:PORT, e.g. clamd://127.0.0.1:3310 (host names are not resolved)"
    )]
    ClamdAddress(String),
}

impl std::str::FromStr for ScannerEngine {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "builtin" => Ok(ScannerEngine::Builtin),
            "off" => Ok(ScannerEngine::Off),
            url => {
                let rest = url
                    .strip_prefix("clamd://")
                    .ok_or_else(|| EngineError::Unknown(url.to_string()))?;
                let addr = rest
                    .trim_end_matches('/')
                    .parse()
                    .map_err(|_| EngineError::ClamdAddress(url.to_string()))?;
                Ok(ScannerEngine::Clamd(addr))
            }
        }
    }
}

impl TryFrom<String> for ScannerEngine {
    type Error = EngineError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::fmt::Display for ScannerEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScannerEngine::Builtin => f.write_str("builtin"),
            ScannerEngine::Clamd(addr) => write!(f, "clamd://{addr}"),
            ScannerEngine::Off => f.write_str("off"),
        }
    }
}

impl From<ScannerEngine> for String {
    fn from(engine: ScannerEngine) -> Self {
        engine.to_string()
    }
}

/// Serialized yara-x rules (see `filter::malware::yara::YaraEngine::compile_serialized`).
#[derive(Clone, Default)]
pub struct PrecompiledRules(pub std::sync::Arc<Vec<u8>>);

impl std::fmt::Debug for PrecompiledRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrecompiledRules({} bytes)", self.0.len())
    }
}

/// Spam filter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spam {
    /// Run the spam filter at all.
    pub enabled: bool,
    /// Score at or above which a message is tagged and filed into `Junk`.
    pub tag_threshold: f64,
    /// Score at or above which a message is refused.
    pub reject_threshold: f64,
    /// Rules file overriding the shipped one (may be absent).
    #[serde(default)]
    pub rules: Option<PathBuf>,
}

/// Protocol limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest accepted line, CRLF included.
    pub max_line_length: usize,
    /// Largest accepted message.
    pub max_message_size: usize,
    /// Simultaneous connections per client address.
    pub max_connections_per_ip: usize,
    /// Simultaneous connections of the whole server.
    pub max_connections: usize,
    /// Seconds to wait for a command before `421`.
    pub command_timeout_secs: u64,
    /// Seconds a TLS handshake may take.
    pub tls_handshake_timeout_secs: u64,
    /// Seconds an IMAP or POP3 client may stay idle before login.
    pub login_timeout_secs: u64,
    /// Seconds one reply may take to be written.
    pub write_timeout_secs: u64,
    /// Failed logins per client address (forgotten after a minute without
    /// one) answered without delay; past it every login from the address
    /// waits the auth penalty.
    pub auth_failures_per_minute: u32,
    /// First auth penalty, doubled per further failure.
    pub auth_failure_delay_ms: u64,
    /// Longest auth penalty.
    pub auth_failure_delay_max_ms: u64,
    /// Largest IMAP literal after login.
    pub max_literal_size: usize,
    /// Deepest MIME nesting (multiparts and messages; Postfix
    /// `mime_nesting_limit`). At most [`crate::message::DEFAULT_MAX_DEPTH`]:
    /// the later parse sites apply that ceiling.
    pub max_mime_depth: usize,
    /// Most MIME parts per message.
    pub max_mime_parts: usize,
    /// Most fields in one header section.
    pub max_header_fields: usize,
    /// Largest header section in bytes.
    pub max_header_bytes: usize,
    /// `Received` fields at which a message is refused (RFC 5321 §6.3).
    pub max_hops: usize,
    /// Bytes one mailbox may hold over all its folders (0: no quota).
    pub mailbox_quota: u64,
    /// Largest IMAP literal before login.
    pub max_prelogin_literal_size: usize,
    /// Largest IMAP command (line and literals) before login.
    pub max_prelogin_command_size: usize,
    /// Bytes held by all sessions together (messages, literals).
    pub max_buffered_bytes: usize,
    /// SMTP junk commands (NOOP, RSET, VRFY) before each counts as an error.
    pub junk_command_limit: u32,
    /// Errors after which each error reply is delayed.
    pub soft_error_limit: u32,
    /// Errors after which the session is closed.
    pub hard_error_limit: u32,
    /// Delay of an error reply past the soft limit, in milliseconds.
    pub error_delay_ms: u64,
    /// Transcript bytes per session; the rest of the session is not logged.
    pub transcript_session_max_bytes: u64,
    /// Size at which a protocol's transcript file is rotated.
    pub transcript_file_max_bytes: u64,
    /// Rotated transcript files kept per protocol (`smtp.jsonl.1`...).
    pub transcript_files_kept: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            command_timeout_secs: DEFAULT_COMMAND_TIMEOUT_SECS,
            tls_handshake_timeout_secs: DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS,
            login_timeout_secs: DEFAULT_LOGIN_TIMEOUT_SECS,
            write_timeout_secs: DEFAULT_WRITE_TIMEOUT_SECS,
            auth_failures_per_minute: DEFAULT_AUTH_FAILURES_PER_MINUTE,
            auth_failure_delay_ms: DEFAULT_AUTH_FAILURE_DELAY_MS,
            auth_failure_delay_max_ms: DEFAULT_AUTH_FAILURE_DELAY_MAX_MS,
            max_literal_size: DEFAULT_MAX_LITERAL_SIZE,
            max_mime_depth: crate::message::DEFAULT_MAX_DEPTH,
            max_mime_parts: crate::message::DEFAULT_MAX_PARTS,
            max_header_fields: crate::message::DEFAULT_MAX_HEADER_FIELDS,
            max_header_bytes: crate::message::DEFAULT_MAX_HEADER_BYTES,
            max_hops: crate::message::DEFAULT_MAX_HOPS,
            mailbox_quota: DEFAULT_MAILBOX_QUOTA,
            max_prelogin_literal_size: DEFAULT_MAX_PRELOGIN_LITERAL_SIZE,
            max_prelogin_command_size: DEFAULT_MAX_PRELOGIN_COMMAND_SIZE,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            junk_command_limit: DEFAULT_JUNK_COMMAND_LIMIT,
            soft_error_limit: DEFAULT_SOFT_ERROR_LIMIT,
            hard_error_limit: DEFAULT_HARD_ERROR_LIMIT,
            error_delay_ms: DEFAULT_ERROR_DELAY_MS,
            transcript_session_max_bytes: DEFAULT_TRANSCRIPT_SESSION_MAX_BYTES,
            transcript_file_max_bytes: DEFAULT_TRANSCRIPT_FILE_MAX_BYTES,
            transcript_files_kept: DEFAULT_TRANSCRIPT_FILES_KEPT,
        }
    }
}

impl Limits {
    /// The command timeout as a `Duration`.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }

    /// The message shape limits (see [`crate::message`]).
    pub fn message(&self) -> crate::message::Limits {
        crate::message::Limits {
            max_depth: self.max_mime_depth,
            max_parts: self.max_mime_parts,
            max_header_fields: self.max_header_fields,
            max_header_bytes: self.max_header_bytes,
        }
    }

    /// The TLS handshake timeout.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.tls_handshake_timeout_secs)
    }

    /// The pre-login idle timeout (IMAP, POP3).
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout_secs)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }

    /// The delay of an error reply once `errors` errors were counted
    /// (zero up to the soft limit).
    pub fn error_delay(&self, errors: u32) -> Duration {
        if errors > self.soft_error_limit {
            Duration::from_millis(self.error_delay_ms)
        } else {
            Duration::ZERO
        }
    }
}

impl Config {
    /// Parses a configuration; `base` resolves relative paths (the config file's folder).
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = serde_yaml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = origin.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.data_dir);
        resolve(&mut self.tls.cert);
        resolve(&mut self.tls.key);
        resolve(&mut self.tls.ca);
        resolve(&mut self.dkim.key);
        if let Some(p) = self.scanner.rules_dir.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.spam.rules.as_mut() {
            resolve(p);
        }
    }

    /// The mailbox with this address (case-insensitive, RFC 5321 §2.4 lets the
    /// domain be compared without case; the lab treats local parts the same way).
    pub fn mailbox(&self, address: &str) -> Option<&Mailbox> {
        self.mailboxes
            .iter()
            .find(|m| m.address.eq_ignore_ascii_case(address))
    }
}
