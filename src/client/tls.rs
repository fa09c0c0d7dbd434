//! TLS for the clients: rustls (ring) trusting the lab CA and nothing else,
//! so a successful handshake proves the chain verifies against the lab CA
//! for the expected server name (RFC 6125 §6 name check by rustls/webpki).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ClientError;

/// A TLS client configuration whose only trust anchor is the lab CA.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(lab CA only)")
    }
}

impl Tls {
    /// Trusts the CA certificate(s) in the PEM file `ca` alone.
    pub fn from_ca_file(ca: &Path) -> Result<Self, ClientError> {
        let pem = std::fs::read(ca)
            .map_err(|e| ClientError::TlsSetup(format!("{}: {e}", ca.display())))?;
        Self::from_ca_pem(&pem)
    }

    /// Trusts the CA certificate(s) in `pem` alone.
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ClientError::TlsSetup(format!("CA PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::TlsSetup(format!("CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ClientError::TlsSetup(
                "no certificate in the CA file".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::TlsSetup(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The same trust, logging the sessions' secrets to `key_log`
    /// (`labctl capture`, docs/capture.md).
    pub fn with_key_log(self, key_log: Arc<dyn rustls::KeyLog>) -> Self {
        let config = mailserver::tls::client_with_key_log(self.connector.config().clone(), key_log);
        Self {
            connector: TlsConnector::from(config),
        }
    }

    /// The handshake on `tcp` for `server_name`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        server_name: &str,
    ) -> Result<TlsStream<TcpStream>, ClientError> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| ClientError::TlsSetup(format!("server name {server_name:?}: {e}")))?;
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|error| ClientError::Tls {
                name: server_name.to_string(),
                error,
            })
    }
}

/// What a TLS session negotiated, for evidence.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// `TLSv1_3`...
    pub version: String,
    /// The cipher suite.
    pub cipher: String,
    /// The peer's certificate chain, DER, leaf first.
    pub chain: Vec<Vec<u8>>,
}

impl TlsInfo {
    /// Reads the negotiated parameters of a finished handshake.
    pub fn of(stream: &TlsStream<TcpStream>) -> Self {
        let (_, session) = stream.get_ref();
        Self {
            version: session
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher: session
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()))
                .unwrap_or_default(),
            chain: session
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.to_vec()).collect())
                .unwrap_or_default(),
        }
    }

    /// The leaf certificate's subject and issuer, e.g.
    /// `CN=mail.metal.com, issuer CN=metal CA`.
    pub fn leaf_names(&self) -> String {
        let Some(der) = self.chain.first() else {
            return "no certificate".into();
        };
        match x509_parser::parse_x509_certificate(der) {
            Ok((_, cert)) => format!("subject {} issued by {}", cert.subject(), cert.issuer()),
            Err(e) => format!("unparsable certificate: {e}"),
        }
    }

    /// One line: version, cipher, names.
    pub fn summary(&self) -> String {
        format!("{} {}; {}", self.version, self.cipher, self.leaf_names())
    }
}
