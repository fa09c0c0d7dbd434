//! TLS material: the server's rustls config (certificate and key rendered by
//! labctl) and the client config that trusts only the lab CA.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::Error;

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// The crypto provider of the whole server: ring (see notes/crates.md).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: our certificate chain and key (TLS 1.2 and 1.3).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    Ok(Arc::new(config))
}

/// The client side (outbound relay): trusts the lab CA and nothing else.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| Error::Tls(format!("{}: {e}", ca.display())))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// "TLS1.3" and the cipher suite name of an established connection, for
/// Received headers and transcripts.
pub fn describe(conn: &rustls::CommonState) -> (String, String) {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "TLS".to_string(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()))
        .unwrap_or_default();
    (version, cipher)
}

/// Proof that TLS is active on a session: the negotiated version and
/// cipher suite (for the Received header and the transcript).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsActive {
    /// `TLS1.3` or `TLS1.2`.
    pub version: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

impl TlsActive {
    /// The facts of an established server connection.
    pub fn of(conn: &rustls::ServerConnection) -> Self {
        let (version, cipher) = describe(conn);
        Self { version, cipher }
    }
}

/// The TLS secrets of the server's sessions in the NSS key log format, for
/// `labctl capture` (docs/capture.md): written only while the file exists.
///
/// A capture creates `<data_dir>/capture/keys.log` and removes it when it
/// ends; each secret is appended to it if, and only if, it exists then (one
/// failed `open` per secret otherwise), so by default nothing is written.
/// The server removes a leftover file (of a capture that was killed) when
/// it starts. Lab-only: the secrets decrypt every recorded session.
#[derive(Debug, Clone)]
pub struct CaptureKeyLog {
    path: std::path::PathBuf,
}

impl CaptureKeyLog {
    /// The folder under the data folder that holds the key log.
    pub const DIR: &'static str = "capture";
    /// The key log's file name in [`Self::DIR`].
    pub const FILE: &'static str = "keys.log";

    /// The key log of the server whose data folder is `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self::at(data_dir.join(Self::DIR).join(Self::FILE))
    }

    /// A key log at `path` (labctl's own clients use one in the lab directory).
    pub fn at(path: std::path::PathBuf) -> Self {
        Self { path }
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file (a capture's end, or a leftover); absent is fine.
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl rustls::KeyLog for CaptureKeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        use std::io::Write;
        // Never created here: no file, no capture, nothing written.
        if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(&self.path) {
            // One write per line, so concurrent handshakes do not interleave (O_APPEND).
            let _ = file.write_all(nss_key_log_line(label, client_random, secret).as_bytes());
        }
    }
}

/// One line of the NSS key log format: `LABEL <client random hex> <secret hex>`
/// (the format of Firefox's SSLKEYLOGFILE that Wireshark reads; rustls
/// names TLS 1.2 master secrets `CLIENT_RANDOM`).
pub fn nss_key_log_line(label: &str, client_random: &[u8], secret: &[u8]) -> String {
    use std::fmt::Write;
    let mut line =
        String::with_capacity(label.len() + 2 * (client_random.len() + secret.len()) + 3);
    line.push_str(label);
    line.push(' ');
    for b in client_random {
        let _ = write!(line, "{b:02x}");
    }
    line.push(' ');
    for b in secret {
        let _ = write!(line, "{b:02x}");
    }
    line.push('\n');
    line
}

/// `config` with `key_log` as its key log.
pub fn server_with_key_log(
    config: Arc<rustls::ServerConfig>,
    key_log: Arc<dyn rustls::KeyLog>,
) -> Arc<rustls::ServerConfig> {
    let mut config = Arc::unwrap_or_clone(config);
    config.key_log = key_log;
    Arc::new(config)
}

/// `config` with `key_log` as its key log.
pub fn client_with_key_log(
    config: Arc<rustls::ClientConfig>,
    key_log: Arc<dyn rustls::KeyLog>,
) -> Arc<rustls::ClientConfig> {
    let mut config = Arc::unwrap_or_clone(config);
    config.key_log = key_log;
    Arc::new(config)
}

#[cfg(test)]
mod key_log_tests {
    use super::*;
    use rustls::KeyLog;

    #[test]
    fn writes_only_while_the_file_exists() {
        let dir = std::env::temp_dir().join(format!("keylog-test-{}", std::process::id()));
        let log = CaptureKeyLog::in_data_dir(&dir);
        log.log("CLIENT_RANDOM", &[1, 2], &[0xab]);
        assert!(!log.path().exists(), "no capture: nothing may be created");
        std::fs::create_dir_all(log.path().parent().unwrap()).unwrap();
        std::fs::write(log.path(), b"").unwrap();
        log.log("CLIENT_RANDOM", &[1, 2], &[0xab]);
        log.log("SERVER_TRAFFIC_SECRET_0", &[0xff], &[0, 0x10]);
        assert_eq!(
            std::fs::read_to_string(log.path()).unwrap(),
            "CLIENT_RANDOM 0102 ab\nSERVER_TRAFFIC_SECRET_0 ff 0010\n"
        );
        log.remove().unwrap();
        log.remove().unwrap();
        log.log("CLIENT_RANDOM", &[1, 2], &[0xab]);
        assert!(!log.path().exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
