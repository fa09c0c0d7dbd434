//! The server: the shared context of every session and the listeners.
//!
//! [`run`] loads nothing by itself: it takes a parsed [`Config`], builds the
//! [`Context`] (TLS, accounts, store, transcripts), binds every configured
//! port (failing fast, naming the port, if one is taken) and hands each
//! accepted connection to the protocol module of its [`Service`].

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

use crate::accounts::Accounts;
use crate::auth::Signer;
use crate::config::Config;
use crate::error::Error;
use crate::filter::Filter;
use crate::queue::Queue;
use crate::store::Store;
use crate::transcript::Transcripts;

/// A listening service of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Port 25: MX, STARTTLS, never AUTH.
    Smtp,
    /// Port 587: submission, STARTTLS then AUTH (RFC 6409).
    Submission,
    /// Port 465: submission over implicit TLS (RFC 8314 §3.3).
    Submissions,
    /// Port 143: IMAP, STARTTLS (RFC 3501 §6.2.1).
    Imap,
    /// Port 993: IMAP over implicit TLS (RFC 8314 §3.2).
    Imaps,
    /// Port 110: POP3, STLS (RFC 2595 §4).
    Pop3,
    /// Port 995: POP3 over implicit TLS (RFC 8314 §3.2).
    Pop3s,
}

impl Service {
    /// Every service, in a fixed order.
    pub const ALL: [Service; 7] = [
        Self::Smtp,
        Self::Submission,
        Self::Submissions,
        Self::Imap,
        Self::Imaps,
        Self::Pop3,
        Self::Pop3s,
    ];

    /// The service's name (as in the config and `status`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Submission => "submission",
            Self::Submissions => "submissions",
            Self::Imap => "imap",
            Self::Imaps => "imaps",
            Self::Pop3 => "pop3",
            Self::Pop3s => "pop3s",
        }
    }

    /// Its port in `config` (0: disabled).
    pub fn port(self, config: &Config) -> u16 {
        let l = &config.listen;
        match self {
            Self::Smtp => l.smtp,
            Self::Submission => l.submission,
            Self::Submissions => l.submissions,
            Self::Imap => l.imap,
            Self::Imaps => l.imaps,
            Self::Pop3 => l.pop3,
            Self::Pop3s => l.pop3s,
        }
    }

    /// True when this build has a protocol handler for the service (it
    /// listens on its port); the orchestrator waits only for these.
    pub fn is_served(self) -> bool {
        handler(self).is_some()
    }

    /// True for the implicit-TLS ports.
    pub fn implicit_tls(self) -> bool {
        matches!(self, Self::Submissions | Self::Imaps | Self::Pop3s)
    }
}

/// Everything a session needs, shared by all sessions.
pub struct Context {
    /// The configuration.
    pub config: Config,
    /// Server TLS configuration (our certificate).
    pub tls_acceptor: tokio_rustls::TlsAcceptor,
    /// Client TLS configuration trusting only the lab CA (outbound relay).
    pub tls_connector: tokio_rustls::TlsConnector,
    /// Mailbox logins.
    pub accounts: Accounts,
    /// The Maildir store.
    pub store: Store,
    /// Session transcripts.
    pub transcripts: Transcripts,
    /// SPF/DKIM/DMARC checks; its resolver (the lab DNS only) also serves
    /// the queue's MX lookups.
    pub authenticator: mail_auth::MessageAuthenticator,
    /// DKIM signer of submitted mail.
    pub signer: Signer,
    /// The outbound queue (spool under `<data_dir>/queue`).
    pub queue: Queue,
    /// The filter stage between DATA and delivery, run in this order
    /// (malware scanner, spam filter...). Filters are added in
    /// [`Context::new`]: push a `Box<dyn Filter>` built from the config.
    pub filters: Vec<Box<dyn Filter>>,
    /// The spam filter's training hook for messages moved into or out of
    /// `Junk` over IMAP (`None`: no training).
    pub junk_training: Option<Arc<dyn crate::filter::JunkTraining>>,
    /// IMAP ENVELOPEs already computed, shared by all IMAP sessions.
    pub envelopes: crate::imap::EnvelopeCache,
    connections: Mutex<HashMap<IpAddr, usize>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("hostname", &self.config.hostname)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Builds the context of `config`: loads TLS material, prepares the data folder.
    pub fn new(config: Config) -> Result<Self, Error> {
        let tls = crate::tls::server_config(&config.tls.cert, &config.tls.key)?;
        let client = crate::tls::client_config(&config.tls.ca)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::Io {
            context: format!(
                "cannot create the data folder {}",
                config.data_dir.display()
            ),
            source,
        })?;
        let transcripts =
            Transcripts::new(&config.data_dir, &config.hostname).map_err(|source| Error::Io {
                context: format!(
                    "cannot create transcripts under {}",
                    config.data_dir.display()
                ),
                source,
            })?;
        let authenticator = crate::auth::resolver(config.dns.server, config.listen.address)
            .map_err(Error::Setup)?;
        let signer =
            Signer::load(&config.dkim, &config.domain).map_err(|e| Error::Setup(e.to_string()))?;
        let queue_dir = config.data_dir.join("queue");
        let queue = Queue::open(&queue_dir).map_err(|e| Error::Setup(e.to_string()))?;
        // The filter stage: malware scanner, then spam filter (per config).
        let built = crate::filter::build_filters(&config)?;
        let junk_training = built
            .spam
            .clone()
            .map(|s| s as Arc<dyn crate::filter::JunkTraining>);
        let filters: Vec<Box<dyn Filter>> = built.list;
        Ok(Self {
            authenticator,
            signer,
            queue,
            filters,
            tls_acceptor: tokio_rustls::TlsAcceptor::from(tls),
            tls_connector: tokio_rustls::TlsConnector::from(client),
            accounts: Accounts::new(&config),
            store: Store::new(config.data_dir.join("mail"), config.hostname.clone())
                .with_quota(config.limits.mailbox_quota),
            transcripts,
            junk_training,
            envelopes: Default::default(),
            connections: Mutex::new(HashMap::new()),
            config,
        })
    }

    /// Counts a new connection from `ip`; `None` when it has too many already.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let mut c = self.connections.lock().expect("connections lock");
        let n = c.entry(ip).or_insert(0);
        if *n >= self.config.limits.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            ctx: self.clone(),
            ip,
        })
    }
}

/// A counted connection; released on drop.
#[derive(Debug)]
pub struct ConnectionSlot {
    ctx: Arc<Context>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self.ctx.connections.lock().expect("connections lock");
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

/// A boxed session future.
pub type Session = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The session handler of a service: takes the accepted connection and the
/// admission slot (over the per-address limit `slot` is `None`: the handler
/// answers with its protocol's "too many connections" reply and closes).
pub type Handler =
    fn(Arc<Context>, TcpStream, SocketAddr, Service, Option<ConnectionSlot>) -> Session;

/// The handler of each service; a protocol module registers itself here.
fn handler(service: Service) -> Option<Handler> {
    match service {
        Service::Smtp | Service::Submission | Service::Submissions => Some(crate::smtp::handle),
        Service::Imap | Service::Imaps => Some(crate::imap::handler),
        Service::Pop3 | Service::Pop3s => Some(crate::pop3::handler),
    }
}

/// Binds every configured service's port.
async fn bind(config: &Config) -> Result<Vec<(Service, TcpListener)>, Error> {
    let mut listeners = Vec::new();
    for service in Service::ALL {
        let port = service.port(config);
        if port == 0 || handler(service).is_none() {
            continue;
        }
        let addr = SocketAddr::new(config.listen.address, port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind {
                addr,
                service: service.name(),
                source,
            })?;
        listeners.push((service, listener));
    }
    Ok(listeners)
}

/// Runs the server until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
    let listeners = bind(&config).await?;
    let ctx = Arc::new(Context::new(config)?);
    let mut tasks = tokio::task::JoinSet::new();
    // The queue's delivery worker; it resumes whatever the spool holds.
    tasks.spawn(crate::queue::worker::run(ctx.clone()));
    for (service, listener) in listeners {
        let ctx = ctx.clone();
        let Some(handle) = handler(service) else {
            continue;
        };
        tracing::info!(service = service.name(), addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "listening");
        tasks.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        let slot = ctx.admit(peer.ip());
                        tokio::spawn(handle(ctx.clone(), stream, peer, service, slot));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(service = service.name(), error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    shutdown.await;
    tasks.shutdown().await;
    Ok(())
}
