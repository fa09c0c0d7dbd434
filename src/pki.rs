//! The lab's PKI: the variant's CA, a server certificate per domain, and a
//! DKIM key per domain. Pure functions over PEM strings; `render` decides
//! what to keep and writes the files.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use time::{Duration, OffsetDateTime};

use crate::variant::CaName;

/// CA validity: 10 years.
const CA_DAYS: i64 = 3650;
/// Server certificate validity: 2 years.
const SERVER_DAYS: i64 = 730;
/// DKIM RSA key size (RFC 8301 §3.2: at least 1024, 2048 recommended).
pub const DKIM_RSA_BITS: usize = 2048;

/// Errors of the PKI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen failed to build or sign a certificate.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// An RSA key could not be generated or encoded.
    #[error("DKIM key: {0}")]
    Rsa(String),
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertAndKey {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
}

/// The distinguished name C, ST, L, O, OU, CN in exactly this order.
fn distinguished_name(name: &CaName, common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, name.country.as_str());
    dn.push(DnType::StateOrProvinceName, name.state.as_str());
    dn.push(DnType::LocalityName, name.locality.as_str());
    dn.push(DnType::OrganizationName, name.organization.as_str());
    dn.push(
        DnType::OrganizationalUnitName,
        name.organizational_unit.as_str(),
    );
    dn.push(DnType::CommonName, common_name);
    dn
}

/// The CA's parameters; deterministic for a variant, so an existing CA key can sign again.
fn ca_params(name: &CaName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(name, &name.common_name);
    // RFC 5280 §4.2.1.9: basicConstraints cA=TRUE (rcgen marks it critical).
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // RFC 5280 §4.2.1.3: a CA signs certificates and CRLs.
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(CA_DAYS);
    params
}

/// Creates the variant's CA: issuer = subject = the variant's name.
pub fn generate_ca(name: &CaName) -> Result<CertAndKey, PkiError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(name).self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues the server certificate of `mail.<domain>` (SAN `mail.<domain>` and `<domain>`).
pub fn issue_server_cert(
    ca_name: &CaName,
    ca_key_pem: &str,
    domain: &str,
) -> Result<CertAndKey, PkiError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::new(ca_params(ca_name), ca_key);
    let hostname = format!("mail.{domain}");
    let mut params = CertificateParams::new(vec![hostname.clone(), domain.to_string()])?;
    params.distinguished_name = distinguished_name(ca_name, &hostname);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(SERVER_DAYS);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Generates a DKIM RSA key: PKCS#8 PEM.
pub fn generate_dkim_key() -> Result<String, PkiError> {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, DKIM_RSA_BITS)
        .map_err(|e| PkiError::Rsa(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| PkiError::Rsa(e.to_string()))?;
    Ok(pem.to_string())
}

/// The DKIM key record (RFC 6376 §3.6.1) of a PKCS#8 PEM RSA key: `p=` is the
/// base64 DER SubjectPublicKeyInfo, as `opendkim-genkey` publishes it.
pub fn dkim_txt(key_pem: &str) -> Result<String, PkiError> {
    use base64::Engine;
    let key =
        rsa::RsaPrivateKey::from_pkcs8_pem(key_pem).map_err(|e| PkiError::Rsa(e.to_string()))?;
    let spki = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| PkiError::Rsa(e.to_string()))?;
    let p = base64::engine::general_purpose::STANDARD.encode(spki.as_bytes());
    Ok(format!("v=DKIM1; k=rsa; p={p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> CaName {
        CaName {
            country: "UA".into(),
            state: "Ukraine".into(),
            locality: "Kyiv".into(),
            organization: "KPI".into(),
            organizational_unit: "OT".into(),
            common_name: "metal CA".into(),
        }
    }

    #[test]
    fn ca_signs_server_certs_and_dkim_txt_has_key() {
        let ca = generate_ca(&name()).unwrap();
        let server = issue_server_cert(&name(), &ca.key_pem, "metal.com").unwrap();
        assert!(server.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let dkim = generate_dkim_key().unwrap();
        let txt = dkim_txt(&dkim).unwrap();
        assert!(
            txt.starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"),
            "{txt}"
        );
    }
}
