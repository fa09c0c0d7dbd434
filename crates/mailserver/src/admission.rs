//! Admission of connections and the bytes they hold, shared by SMTP, IMAP
//! and POP3 (see docs/connections.md).
//!
//! [`Connections`] counts connections globally (`limits.max_connections`)
//! and per client address (`limits.max_connections_per_ip`). When a cap is
//! reached, the oldest connection that is idle before login (waiting for a
//! TLS handshake or for a command, not logged in, no SMTP transaction)
//! gives way, as Dovecot's login processes do: it is told through its
//! [`Life`] and closes with its protocol's goodbye, and the new client is
//! served. Only when no connection can give way is the new one refused.
//! Idle sockets thus never lock real clients out.
//!
//! [`Budget`] bounds the bytes held by all sessions together (messages
//! being received, IMAP literals): a semaphore of bytes.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// What a connection's session shares with the registry.
#[derive(Debug)]
struct Shared {
    id: u64,
    ip: IpAddr,
    /// Waiting for the client (handshake or command).
    idle: AtomicBool,
    /// Logged in, or inside an SMTP transaction: never evicted.
    protected: AtomicBool,
    evicted: AtomicBool,
    notify: Notify,
}

/// A session's view of its admission: marks idle and protected phases and
/// learns of its eviction. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Life(Arc<Shared>);

impl Life {
    /// A life outside any registry (session tests): never evicted.
    pub fn detached() -> Self {
        Self(Arc::new(Shared {
            id: 0,
            ip: IpAddr::from([0, 0, 0, 0]),
            idle: AtomicBool::new(false),
            protected: AtomicBool::new(true),
            evicted: AtomicBool::new(false),
            notify: Notify::new(),
        }))
    }

    /// Marks the session as logged in (or in a transaction: `true`), so it
    /// never gives way; `false` makes it evictable again when idle.
    pub fn set_protected(&self, protected: bool) {
        self.0.protected.store(protected, Ordering::Relaxed);
    }

    /// True once the registry chose this connection to give way.
    pub fn is_evicted(&self) -> bool {
        self.0.evicted.load(Ordering::Relaxed)
    }

    /// Runs `fut` (a read or a handshake) as an idle phase: `None` when the
    /// connection was evicted meanwhile (or before). Cancel-safe if `fut` is.
    pub async fn idle<F: Future>(&self, fut: F) -> Option<F::Output> {
        if self.is_evicted() {
            return None;
        }
        struct Busy<'a>(&'a AtomicBool);
        impl Drop for Busy<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
            }
        }
        self.0.idle.store(true, Ordering::Relaxed);
        let _busy = Busy(&self.0.idle);
        tokio::select! {
            out = fut => Some(out),
            () = self.0.notify.notified() => None,
        }
    }

    fn evict(&self) {
        self.0.evicted.store(true, Ordering::Relaxed);
        self.0.notify.notify_one();
    }

    fn evictable(&self) -> bool {
        self.0.idle.load(Ordering::Relaxed)
            && !self.0.protected.load(Ordering::Relaxed)
            && !self.is_evicted()
    }
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Live connections by admission order (oldest first).
    live: BTreeMap<u64, Life>,
    per_ip: HashMap<IpAddr, usize>,
}

impl State {
    fn remove(&mut self, id: u64) -> Option<Life> {
        let life = self.live.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&life.0.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&life.0.ip);
            }
        }
        Some(life)
    }
}

/// The connection registry of a server.
#[derive(Debug)]
pub struct Connections {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<State>,
}

/// An admitted connection; released on drop.
#[derive(Debug)]
pub struct Slot {
    registry: Arc<Connections>,
    life: Life,
}

impl Slot {
    /// The session's handle.
    pub fn life(&self) -> &Life {
        &self.life
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut s) = self.registry.state.lock() {
            s.remove(self.life.0.id);
        }
    }
}

impl Connections {
    /// A registry with these caps.
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_ip: max_per_ip.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// Admits a connection from `ip`, evicting the oldest idle pre-login
    /// connection when a cap is reached (one from `ip` when the per-address
    /// cap is the one reached). `None`: nothing can give way, refuse.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut s = self.state.lock().ok()?;
        let ip_full = s.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip;
        let all_full = s.live.len() >= self.max_total;
        if ip_full || all_full {
            let victim = s
                .live
                .iter()
                .find(|(_, l)| l.evictable() && (!ip_full || l.0.ip == ip))
                .map(|(id, _)| *id)?;
            if let Some(life) = s.remove(victim) {
                life.evict();
            }
        }
        s.next += 1;
        let life = Life(Arc::new(Shared {
            id: s.next,
            ip,
            idle: AtomicBool::new(false),
            protected: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            notify: Notify::new(),
        }));
        let id = s.next;
        s.live.insert(id, life.clone());
        *s.per_ip.entry(ip).or_insert(0) += 1;
        Some(Slot {
            registry: self.clone(),
            life,
        })
    }

    /// Connections counted now.
    pub fn count(&self) -> usize {
        self.state.lock().map(|s| s.live.len()).unwrap_or(0)
    }
}

/// The bytes all sessions may hold together.
#[derive(Debug)]
pub struct Budget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Bytes taken from a [`Budget`]; given back on drop.
#[derive(Debug, Default)]
pub struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

impl Budget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, u32::MAX as usize);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Adds `n` bytes to `held`, waiting at most `wait` for other sessions
    /// to give some back. False: the server is out of buffer space now
    /// (the caller answers with a temporary error).
    pub async fn reserve(&self, held: &mut Held, n: usize, wait: Duration) -> bool {
        if n == 0 {
            return true;
        }
        if held.bytes() + n > self.total {
            return false;
        }
        let Ok(n) = u32::try_from(n) else {
            return false;
        };
        let permit = tokio::time::timeout(wait, self.bytes.clone().acquire_many_owned(n)).await;
        match permit {
            Ok(Ok(p)) => {
                match held.0.as_mut() {
                    Some(h) => h.merge(p),
                    None => held.0 = Some(p),
                }
                true
            }
            _ => false,
        }
    }

    /// Bytes free now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[tokio::test]
    async fn oldest_idle_gives_way_per_address() {
        let reg = Connections::new(100, 2);
        let a = reg.admit(ip(1)).unwrap();
        let b = reg.admit(ip(1)).unwrap();
        // Nobody idle: refused.
        assert!(reg.admit(ip(1)).is_none());
        let (la, lb) = (a.life().clone(), b.life().clone());
        let wa = tokio::spawn(async move { la.idle(std::future::pending::<()>()).await });
        let wb = tokio::spawn(async move { lb.idle(std::future::pending::<()>()).await });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Another address is not affected by the per-address cap.
        let _other = reg.admit(ip(2)).unwrap();
        let c = reg.admit(ip(1)).unwrap();
        assert_eq!(wa.await.unwrap(), None, "the oldest idle one gave way");
        assert!(!b.life().is_evicted());
        assert!(!c.life().is_evicted());
        drop(a);
        assert_eq!(reg.count(), 3);
        wb.abort();
    }

    #[tokio::test]
    async fn protected_connections_never_give_way() {
        let reg = Connections::new(1, 10);
        let a = reg.admit(ip(1)).unwrap();
        a.life().set_protected(true);
        let la = a.life().clone();
        let _w = tokio::spawn(async move { la.idle(std::future::pending::<()>()).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(reg.admit(ip(2)).is_none(), "global cap, nobody evictable");
        drop(a);
        assert!(reg.admit(ip(2)).is_some());
    }

    #[tokio::test]
    async fn budget_bounds_bytes_held() {
        let b = Budget::new(1000);
        let mut h1 = Held::default();
        assert!(b.reserve(&mut h1, 600, Duration::ZERO).await);
        assert!(b.reserve(&mut h1, 300, Duration::ZERO).await);
        assert_eq!(h1.bytes(), 900);
        let mut h2 = Held::default();
        assert!(!b.reserve(&mut h2, 200, Duration::from_millis(10)).await);
        drop(h1);
        assert!(b.reserve(&mut h2, 200, Duration::ZERO).await);
        assert_eq!(b.available(), 800);
    }
}
