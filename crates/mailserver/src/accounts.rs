//! Mailbox logins, shared by SMTP AUTH (RFC 4954), IMAP LOGIN/AUTHENTICATE
//! (RFC 3501 §6.2) and POP3 USER/PASS (RFC 1939 §7).
//!
//! Passwords are argon2 PHC strings from the rendered config. Failed logins
//! are counted per client address; past the limit every login from that
//! address is refused for a minute, even with the right password.
//!
//! Successful verifications are cached, as Dovecot's `auth_cache` does:
//! per mailbox, an HMAC-SHA256 of the password under a key drawn at start
//! (never the password, never a plain hash of it) and the time of the
//! check. A login with the same password within [`CACHE_TTL`] skips argon2
//! (tens of milliseconds of CPU), so clients that connect per message do
//! not pay it every time. A wrong password is never answered from the
//! cache: it goes to argon2 and counts as a failure; the rate limit is
//! checked before the cache.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier};

use crate::config::Config;

/// The window failed logins are counted in.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a successful verification is reused (Dovecot's
/// `auth_cache_ttl` defaults to an hour; the config is fixed per process).
pub const CACHE_TTL: Duration = Duration::from_secs(300);

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
    /// Per-process key of the cache's HMACs.
    cache_key: ring::hmac::Key,
    /// Mailbox -> HMAC of the last verified password and when (at most
    /// one entry per mailbox of the config: bounded).
    cache: Mutex<HashMap<String, (ring::hmac::Tag, Instant)>>,
    /// One password check per core at a time.
    hashing: Gate,
}

impl Accounts {
    /// The accounts of a config.
    pub fn new(config: &Config) -> Self {
        Self::with_hashes(
            config
                .mailboxes
                .iter()
                .map(|m| (m.address.to_ascii_lowercase(), m.password_hash.clone()))
                .collect(),
            config.limits.auth_failures_per_minute,
        )
    }

    /// Accounts from address -> argon2 PHC string.
    fn with_hashes(hashes: HashMap<String, String>, max_failures: u32) -> Self {
        Self {
            hashes,
            max_failures,
            failures: Mutex::new(HashMap::new()),
            hashing: Gate::new(
                std::thread::available_parallelism()
                    .map(std::num::NonZero::get)
                    .unwrap_or(2),
            ),
            cache_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rand::random::<[u8; 32]>()),
            cache: Mutex::new(HashMap::new()),
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
        if self.cached(&address, password) {
            return Ok(Authenticated { address });
        }
        let _slot = self.hashing.enter();
        let ok = self.hashes.get(&address).is_some_and(|phc| {
            PasswordHash::new(phc).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        });
        if ok {
            let tag = ring::hmac::sign(&self.cache_key, password.as_bytes());
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert(address.clone(), (tag, Instant::now()));
            }
            Ok(Authenticated { address })
        } else {
            self.record_failure(peer);
            Err(LoginError::Invalid)
        }
    }

    /// True when `password` is the one verified for `address` within the TTL
    /// (compared in constant time by `hmac::verify`).
    fn cached(&self, address: &str, password: &str) -> bool {
        let Ok(cache) = self.cache.lock() else {
            return false;
        };
        cache.get(address).is_some_and(|(tag, at)| {
            at.elapsed() < CACHE_TTL
                && ring::hmac::verify(&self.cache_key, password.as_bytes(), tag.as_ref()).is_ok()
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Accounts {
        use argon2::password_hash::PasswordHasher;
        let hash = Argon2::default()
            .hash_password_with_salt(b"right horse", b"sixteen byte slt")
            .unwrap()
            .to_string();
        Accounts::with_hashes([("gold@metal.com".to_string(), hash)].into(), 3)
    }

    #[test]
    fn cache_reuses_only_the_verified_password() {
        let a = accounts();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(!a.cached("gold@metal.com", "right horse"));
        let ok = a.login("Gold@Metal.com", "right horse", ip).unwrap();
        assert_eq!(ok.address(), "gold@metal.com");
        assert!(a.cached("gold@metal.com", "right horse"));
        assert!(!a.cached("gold@metal.com", "wrong horse"));
        // The cache never accepts another password; failures still count.
        assert_eq!(
            a.login("gold@metal.com", "wrong horse", ip),
            Err(LoginError::Invalid)
        );
        assert!(a.login("gold@metal.com", "right horse", ip).is_ok());
        // The rate limit comes before the cache.
        for _ in 0..2 {
            let _ = a.login("gold@metal.com", "x", ip);
        }
        assert_eq!(
            a.login("gold@metal.com", "right horse", ip),
            Err(LoginError::RateLimited)
        );
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(a.login("gold@metal.com", "right horse", other).is_ok());
    }
}
