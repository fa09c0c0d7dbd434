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
