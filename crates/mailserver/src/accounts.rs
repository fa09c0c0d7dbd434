//! Mailbox logins, shared by SMTP AUTH (RFC 4954), IMAP LOGIN/AUTHENTICATE
//! (RFC 3501 §6.2) and POP3 USER/PASS (RFC 1939 §7).
//!
//! Passwords are argon2 PHC strings from the rendered config. Failed logins
//! are counted per client address; past the limit every login from that
//! address is refused for a minute, even with the right password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};

use crate::config::Config;

/// The window failed logins are counted in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Proof that a login succeeded: the canonical mailbox address.
/// Only [`Accounts::login`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    address: String,
}

impl Authenticated {
    /// The mailbox address (lower case), also the only allowed sender address.
    pub fn address(&self) -> &str {
        &self.address
    }
}

/// Why a login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (not told apart, RFC 4954 §6).
    #[error("invalid credentials")]
    Invalid,
    /// Too many failures from this address.
    #[error("too many failed logins from this address, try again later")]
    RateLimited,
}

/// The mailboxes and their password hashes.
#[derive(Debug)]
pub struct Accounts {
    hashes: HashMap<String, String>,
    max_failures: u32,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    /// One password check per core at a time.
    hashing: Gate,
}

impl Accounts {
    /// The accounts of a config.
    pub fn new(config: &Config) -> Self {
        Self {
            hashes: config
                .mailboxes
                .iter()
                .map(|m| (m.address.to_ascii_lowercase(), m.password_hash.clone()))
                .collect(),
            max_failures: config.limits.auth_failures_per_minute,
            failures: Mutex::new(HashMap::new()),
            hashing: Gate::new(
                std::thread::available_parallelism()
                    .map(std::num::NonZero::get)
                    .unwrap_or(2),
            ),
        }
    }

    /// True if `address` is a local mailbox.
    pub fn exists(&self, address: &str) -> bool {
        self.hashes.contains_key(&address.to_ascii_lowercase())
    }

    /// Checks a login from `peer`. Argon2 is deliberately slow (tens of
    /// milliseconds): call it from a blocking context (`spawn_blocking`).
    pub fn login(
        &self,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<Authenticated, LoginError> {
        if self.is_limited(peer) {
            return Err(LoginError::RateLimited);
        }
        let address = user.to_ascii_lowercase();
        let _slot = self.hashing.enter();
        let ok = self.hashes.get(&address).is_some_and(|phc| {
            PasswordHash::new(phc).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        });
        if ok {
            Ok(Authenticated { address })
        } else {
            self.record_failure(peer);
            Err(LoginError::Invalid)
        }
    }

    fn is_limited(&self, peer: IpAddr) -> bool {
        let failures = self.failures.lock().expect("failures lock");
        failures
            .get(&peer)
            .is_some_and(|(since, n)| since.elapsed() < FAILURE_WINDOW && *n >= self.max_failures)
    }

    fn record_failure(&self, peer: IpAddr) {
        let mut failures = self.failures.lock().expect("failures lock");
        let entry = failures.entry(peer).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}

/// A counting gate: at most `n` holders at once, the others wait. Bounds the
/// password checks running at the same time, each of which takes argon2id's
/// 19 MiB and a core for tens of milliseconds, so a burst of logins (or an
/// attack) costs time, not memory beyond the container's limit.
#[derive(Debug)]
struct Gate {
    free: Mutex<usize>,
    freed: std::sync::Condvar,
}

/// A place in a [`Gate`], given back on drop.
struct Slot<'a>(&'a Gate);

impl Gate {
    fn new(n: usize) -> Self {
        Self {
            free: Mutex::new(n.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits for a place (blocking: callers are on the blocking pool).
    fn enter(&self) -> Slot<'_> {
        let mut free = self.free.lock().expect("gate lock");
        while *free == 0 {
            free = self.freed.wait(free).expect("gate lock");
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().expect("gate lock") += 1;
        self.0.freed.notify_one();
    }
}
