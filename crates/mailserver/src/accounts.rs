//! Mailbox logins, shared by SMTP AUTH (RFC 4954), IMAP LOGIN/AUTHENTICATE
//! (RFC 3501 §6.2) and POP3 USER/PASS (RFC 1939 §7).
//!
//! Passwords are argon2 PHC strings from the rendered config. Failed logins
//! are counted per client address and slow guessing down by delay, as
//! Dovecot's auth penalty and `auth_failure_delay`: past
//! `limits.auth_failures_per_minute` failures, a failed login is answered
//! only after `limits.auth_failure_delay_ms`, doubled per further failure up
//! to `limits.auth_failure_delay_max_ms`, and a successful one from that
//! address waits the same. The right password is never refused for it
//! (clients behind one shared address, such as Docker's gateway, are
//! slowed, not locked out), and an address with no failures is never
//! slowed, however many of its clients log in at once. A failure is
//! recorded and its delay computed in one step, so parallel guesses each
//! see the ones before and cannot pass the penalty. The count is forgotten
//! a minute after the last failure.
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
}

/// The mailboxes and their password hashes.
#[derive(Debug)]
pub struct Accounts {
    hashes: HashMap<String, String>,
    penalty: Penalty,
    /// Failures (attempts in flight included) per address and the last one.
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
            Penalty {
                free: config.limits.auth_failures_per_minute,
                first: Duration::from_millis(config.limits.auth_failure_delay_ms),
                max: Duration::from_millis(config.limits.auth_failure_delay_max_ms),
            },
        )
    }

    /// Accounts from address -> argon2 PHC string.
    fn with_hashes(hashes: HashMap<String, String>, penalty: Penalty) -> Self {
        Self {
            hashes,
            penalty,
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

    /// Checks a login from `peer`, after the auth penalty of its address.
    /// Argon2 is deliberately slow (tens of milliseconds) and the penalty
    /// sleeps: call it from a blocking context (`spawn_blocking`).
    pub fn login(
        &self,
        user: &str,
        password: &str,
        peer: IpAddr,
    ) -> Result<Authenticated, LoginError> {
        let result = self.verify(user, password);
        let delay = match result {
            Ok(_) => self.penalty_of(peer),
            Err(_) => self.record_failure(peer),
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        result
    }

    fn verify(&self, user: &str, password: &str) -> Result<Authenticated, LoginError> {
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

    /// Records a failure from `peer` and returns its delay, in one step
    /// under the lock: parallel failures each see the ones before.
    fn record_failure(&self, peer: IpAddr) -> Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return self.penalty.max;
        };
        let now = Instant::now();
        let entry = failures.entry(peer).or_insert((now, 0));
        if entry.0.elapsed() >= FAILURE_WINDOW {
            entry.1 = 0;
        }
        let before = entry.1;
        *entry = (now, before.saturating_add(1));
        self.penalty.after(before)
    }

    /// The delay of a successful login from `peer`: the penalty of the
    /// failures recorded from its address (none: no delay).
    fn penalty_of(&self, peer: IpAddr) -> Duration {
        let Ok(failures) = self.failures.lock() else {
            return self.penalty.max;
        };
        match failures.get(&peer) {
            Some((at, n)) if at.elapsed() < FAILURE_WINDOW => self.penalty.after(*n),
            _ => Duration::ZERO,
        }
    }
}

/// The auth penalty (Dovecot's `auth_penalty`): no delay for the first
/// `free` failures, then `first`, doubled per failure, capped at `max`.
#[derive(Debug, Clone, Copy)]
struct Penalty {
    free: u32,
    first: Duration,
    max: Duration,
}

impl Penalty {
    /// The delay of an attempt after `failures` failures.
    fn after(&self, failures: u32) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free).min(20);
        self.first.saturating_mul(1 << doublings).min(self.max)
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
        let penalty = Penalty {
            free: 3,
            first: Duration::from_millis(100),
            max: Duration::from_millis(400),
        };
        Accounts::with_hashes([("gold@metal.com".to_string(), hash)].into(), penalty)
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
    }

    #[test]
    fn penalty_grows_and_is_capped() {
        let p = accounts().penalty;
        let ms = |n| p.after(n).as_millis();
        assert_eq!(
            [ms(0), ms(2), ms(3), ms(4), ms(5), ms(9)],
            [0, 0, 100, 200, 400, 400]
        );
    }

    #[test]
    fn parallel_right_logins_from_a_clean_address_are_not_delayed() {
        let a = std::sync::Arc::new(accounts());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let logins: Vec<_> = (0..12)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || a.login("gold@metal.com", "right horse", ip))
            })
            .collect();
        for l in logins {
            assert!(l.join().unwrap().is_ok());
        }
        // Twelve at once, past the three free failures: none is counted as
        // a failure, so none waits a penalty, and the next login neither.
        assert!(a.failures.lock().unwrap().get(&ip).is_none());
        assert_eq!(a.penalty_of(ip), Duration::ZERO);
    }

    #[test]
    fn parallel_guesses_are_delayed_and_the_right_password_still_works() {
        let a = std::sync::Arc::new(accounts());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let started = Instant::now();
        let guesses: Vec<_> = (0..6)
            .map(|i| {
                let a = a.clone();
                std::thread::spawn(move || a.login("gold@metal.com", &format!("guess {i}"), ip))
            })
            .collect();
        for g in guesses {
            assert_eq!(g.join().unwrap(), Err(LoginError::Invalid));
        }
        // Six attempts at once: 0, 0, 0, 100, 200, 400 ms, not all free.
        assert!(started.elapsed() >= Duration::from_millis(400));
        // The right password is delayed (capped), never refused.
        let t = Instant::now();
        assert!(a.login("gold@metal.com", "right horse", ip).is_ok());
        assert!(t.elapsed() >= Duration::from_millis(400));
        // Another address is not slowed.
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let t = Instant::now();
        assert!(a.login("gold@metal.com", "right horse", other).is_ok());
        assert!(t.elapsed() < Duration::from_millis(100));
    }
}
