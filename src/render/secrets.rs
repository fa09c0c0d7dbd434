//! The lab's secrets: CA, server certificates, DKIM keys and mailbox
//! passwords. Existing ones are loaded from the lab directory; missing ones
//! (or all, with `fresh`) are generated and written with mode 0600.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use super::{RenderError, layout, write_file};
use crate::pki;
use crate::plan::Plan;

/// Length of generated passwords.
const PASSWORD_LEN: usize = 16;

/// Mailbox passwords.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    passwords: BTreeMap<String, String>,
}

impl Credentials {
    /// Parses `credentials.txt` (`address password` per line, `#` comments).
    pub fn parse(text: &str) -> Option<Self> {
        let mut passwords = BTreeMap::new();
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (address, password) = line.split_once(char::is_whitespace)?;
            passwords.insert(address.to_string(), password.trim().to_string());
        }
        Some(Self { passwords })
    }

    /// The password of a mailbox.
    pub fn password(&self, address: &str) -> Option<&str> {
        self.passwords.get(address).map(String::as_str)
    }

    /// The argon2id PHC string of a mailbox's password. The salt is derived
    /// from the address and the password, so re-rendering an unchanged lab
    /// writes the same config (and `up` sees nothing changed); it is still
    /// unique per mailbox and changes with the password.
    pub fn password_hash(&self, address: &str) -> String {
        let password = self.password(address).unwrap_or_default();
        let salt = Sha256::digest(format!("labctl salt\0{address}\0{password}").as_bytes());
        Argon2::default()
            .hash_password_with_salt(password.as_bytes(), &salt[..16])
            .expect("argon2 with a 16-byte salt and default parameters")
            .to_string()
    }

    /// The file's text.
    pub fn to_file(&self, plan: &Plan) -> String {
        let mut s = format!(
            "# Mailbox passwords of {} (variant {}). Keep this file private.\n# address password\n",
            plan.name, plan.variant.number
        );
        for m in &plan.variant.mailboxes {
            s.push_str(&format!("{m} {}\n", self.password(m).unwrap_or_default()));
        }
        s
    }
}

/// Everything secret of a lab.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// CA certificate, PEM.
    pub ca_cert: String,
    /// DKIM TXT values by domain.
    pub dkim_txt: BTreeMap<String, String>,
    /// Mailbox passwords.
    pub credentials: Credentials,
}

impl Secrets {
    /// The DKIM TXT value of a domain.
    pub fn dkim_txt(&self, domain: &str) -> &str {
        self.dkim_txt
            .get(domain)
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// Loads the secrets of `plan.dir`, generating what is missing (all with `fresh`).
    pub fn load_or_generate(plan: &Plan, fresh: bool) -> Result<Self, RenderError> {
        let dir = &plan.dir;
        let read = |rel: &str| -> Option<String> {
            if fresh {
                None
            } else {
                fs::read_to_string(dir.join(rel)).ok()
            }
        };

        // CA: kept when both files exist. A new CA invalidates every server certificate.
        let (ca_cert, ca_key, new_ca) = match (read(layout::CA_CERT), read(layout::CA_KEY)) {
            (Some(c), Some(k)) => (c, k, false),
            _ => {
                let ca = pki::generate_ca(&plan.variant.ca)?;
                write_file(&dir.join(layout::CA_KEY), ca.key_pem.as_bytes(), 0o600)?;
                write_file(&dir.join(layout::CA_CERT), ca.cert_pem.as_bytes(), 0o644)?;
                (ca.cert_pem, ca.key_pem, true)
            }
        };
        let mut dkim_txt = BTreeMap::new();
        for domain in &plan.variant.domains {
            let (cert, key) = (layout::server_cert(domain), layout::server_key(domain));
            if new_ca || read(&cert).is_none() || read(&key).is_none() {
                let issued = pki::issue_server_cert(&plan.variant.ca, &ca_key, domain)?;
                write_file(&dir.join(&key), issued.key_pem.as_bytes(), 0o600)?;
                write_file(&dir.join(&cert), issued.cert_pem.as_bytes(), 0o644)?;
            }
            let key_path = layout::dkim_key(domain);
            let key = match read(&key_path) {
                Some(k) => k,
                None => {
                    let k = pki::generate_dkim_key()?;
                    write_file(&dir.join(&key_path), k.as_bytes(), 0o600)?;
                    k
                }
            };
            let txt = pki::dkim_txt(&key).map_err(|e| RenderError::BadSecret {
                path: dir.join(&key_path),
                problem: e.to_string(),
            })?;
            write_file(
                &dir.join(layout::dkim_txt(domain)),
                format!("{txt}\n").as_bytes(),
                0o644,
            )?;
            dkim_txt.insert(domain.clone(), txt);
        }
        let mut credentials = read(layout::CREDENTIALS)
            .map(|text| {
                Credentials::parse(&text).ok_or_else(|| RenderError::BadSecret {
                    path: dir.join(layout::CREDENTIALS),
                    problem: "expected lines of `address password`".into(),
                })
            })
            .transpose()?
            .unwrap_or_default();
        for m in &plan.variant.mailboxes {
            credentials
                .passwords
                .entry(m.clone())
                .or_insert_with(|| Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LEN));
        }
        credentials
            .passwords
            .retain(|m, _| plan.variant.mailboxes.contains(m));
        Ok(Self {
            ca_cert,
            dkim_txt,
            credentials,
        })
    }

    /// Reads the secrets of an already rendered lab directory without generating anything.
    pub fn credentials_of(dir: &Path) -> Option<Credentials> {
        Credentials::parse(&fs::read_to_string(dir.join(layout::CREDENTIALS)).ok()?)
    }
}
