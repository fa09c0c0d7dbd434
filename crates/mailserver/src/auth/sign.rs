//! DKIM signing of submitted mail (RFC 6376 §5): rsa-sha256 or
//! ed25519-sha256 (RFC 8463), relaxed/relaxed canonicalization, the header
//! fields of the config. The signature is returned as a header field to
//! prepend; the message itself is never rewritten.

use std::path::Path;

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::config::Dkim;

/// Errors of loading the signing key or signing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The key file cannot be read or parsed.
    #[error("DKIM key {path}: {message}")]
    Key {
        /// The key file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The algorithm in the config is not known.
    #[error("DKIM algorithm {0:?} is not supported; use rsa-sha256 or ed25519-sha256")]
    Algorithm(String),
    /// Signing failed (e.g. no From header field).
    #[error("DKIM signing failed: {0}")]
    Sign(String),
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
        let key_err = |message: String| SignerError::Key {
            path: config.key.display().to_string(),
            message,
        };
        let der = read_key(&config.key).map_err(key_err)?;
        let key = match config.algorithm.as_str() {
            "rsa-sha256" => {
                let k = RsaKey::<Sha256>::from_key_der(der).map_err(|e| key_err(e.to_string()))?;
                Key::Rsa(
                    DkimSigner::from_key(k)
                        .domain(domain)
                        .selector(&config.selector)
                        .headers(config.headers.iter().cloned())
                        .header_canonicalization(Canonicalization::Relaxed)
                        .body_canonicalization(Canonicalization::Relaxed),
                )
            }
            "ed25519-sha256" => {
                let PrivateKeyDer::Pkcs8(p8) = der else {
                    return Err(key_err("ed25519 keys must be PKCS#8".into()));
                };
                let k = Ed25519Key::from_pkcs8_der(p8.secret_pkcs8_der())
                    .map_err(|e| key_err(e.to_string()))?;
                Key::Ed25519(
                    DkimSigner::from_key(k)
                        .domain(domain)
                        .selector(&config.selector)
                        .headers(config.headers.iter().cloned())
                        .header_canonicalization(Canonicalization::Relaxed)
                        .body_canonicalization(Canonicalization::Relaxed),
                )
            }
            other => return Err(SignerError::Algorithm(other.to_string())),
        };
        Ok(Self { key })
    }

    /// Signs `message`; returns the `DKIM-Signature` header field (with CRLF).
    pub fn sign(&self, message: &[u8]) -> Result<String, SignerError> {
        let sig = match &self.key {
            Key::Rsa(s) => s.sign(message),
            Key::Ed25519(s) => s.sign(message),
        }
        .map_err(|e| SignerError::Sign(e.to_string()))?;
        Ok(sig.to_header())
    }
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| e.to_string())
}
