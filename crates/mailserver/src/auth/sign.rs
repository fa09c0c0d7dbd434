//! DKIM signing of submitted mail (RFC 6376 §5): rsa-sha256 or
//! ed25519-sha256 (RFC 8463), relaxed/relaxed canonicalization, the header
//! fields of the config. The signature is returned as a header field to
//! prepend; the message itself is never rewritten.

use std::path::PathBuf;

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::config::{Dkim, DkimAlgorithm};

/// Errors of loading the signing key or signing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The key file cannot be read or holds no PEM private key.
    #[error("DKIM key {}: {source}", path.display())]
    Pem {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        source: rustls_pki_types::pem::Error,
    },
    /// The key does not suit the algorithm.
    #[error("DKIM key {}: {source}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What mail-auth said.
        source: mail_auth::Error,
    },
    /// An ed25519 key not in PKCS#8 (RFC 8410 §7).
    #[error("DKIM key {}: ed25519 keys must be PKCS#8", path.display())]
    NotPkcs8 {
        /// The key file.
        path: PathBuf,
    },
    /// Signing failed (e.g. no From header field).
    #[error("DKIM signing failed: {0}")]
    Sign(#[source] mail_auth::Error),
}

enum Key {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// The DKIM signer of a server.
pub struct Signer {
    key: Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads the key of `config` for `domain`.
    pub fn load(config: &Dkim, domain: &str) -> Result<Self, SignerError> {
        let path = || config.key.clone();
        let key_err = |source| SignerError::Key {
            path: path(),
            source,
        };
        let der = PrivateKeyDer::from_pem_file(&config.key).map_err(|source| SignerError::Pem {
            path: path(),
            source,
        })?;
        let key = match config.algorithm {
            DkimAlgorithm::RsaSha256 => {
                let k = RsaKey::<Sha256>::from_key_der(der).map_err(key_err)?;
                Key::Rsa(signer(k, config, domain))
            }
            DkimAlgorithm::Ed25519Sha256 => {
                let PrivateKeyDer::Pkcs8(p8) = der else {
                    return Err(SignerError::NotPkcs8 { path: path() });
                };
                let k = Ed25519Key::from_pkcs8_der(p8.secret_pkcs8_der()).map_err(key_err)?;
                Key::Ed25519(signer(k, config, domain))
            }
        };
        Ok(Self { key })
    }

    /// Signs `message`; returns the `DKIM-Signature` header field (with CRLF).
    pub fn sign(&self, message: &[u8]) -> Result<String, SignerError> {
        let sig = match &self.key {
            Key::Rsa(s) => s.sign(message),
            Key::Ed25519(s) => s.sign(message),
        }
        .map_err(SignerError::Sign)?;
        Ok(sig.to_header())
    }
}

/// A signer with `key` for `domain`: the config's selector and header
/// fields, relaxed/relaxed canonicalization (RFC 6376 §3.4).
fn signer<K: SigningKey>(key: K, config: &Dkim, domain: &str) -> DkimSigner<K, Done> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(&config.selector)
        .headers(config.headers.iter().cloned())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}
