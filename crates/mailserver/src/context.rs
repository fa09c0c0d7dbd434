//! The shared context of every session, below the protocols: the
//! configuration, TLS, accounts, store, queue, filters, transcripts, and
//! the admission of connections and bytes ([`crate::admission`]).

use std::sync::Arc;

use crate::accounts::Accounts;
use crate::admission::{Budget, Connections};
use crate::auth::Signer;
use crate::config::Config;
use crate::error::Error;
use crate::filter::Filter;
use crate::queue::Queue;
use crate::store::Store;
use crate::transcript::Transcripts;

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
    /// Connections admitted (global and per-address caps, eviction).
    pub connections: Arc<Connections>,
    /// Bytes held by all sessions together.
    pub budget: Budget,
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
        // `labctl capture` (docs/capture.md): secrets only while a capture
        // runs; a killed capture's key log is removed here.
        let key_log = crate::tls::CaptureKeyLog::in_data_dir(&config.data_dir);
        key_log.remove().map_err(|source| Error::Io {
            context: format!("cannot remove {}", key_log.path().display()),
            source,
        })?;
        let key_log: Arc<dyn rustls::KeyLog> = Arc::new(key_log);
        let tls = crate::tls::server_config(&config.tls.cert, &config.tls.key)?;
        let tls = crate::tls::server_with_key_log(tls, key_log.clone());
        let client =
            crate::tls::client_with_key_log(crate::tls::client_config(&config.tls.ca)?, key_log);
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::Io {
            context: format!(
                "cannot create the data folder {}",
                config.data_dir.display()
            ),
            source,
        })?;
        let transcripts = Transcripts::new(&config.data_dir, &config.hostname, &config.limits)
            .map_err(|source| Error::Io {
                context: format!(
                    "cannot create transcripts under {}",
                    config.data_dir.display()
                ),
                source,
            })?;
        let authenticator = crate::auth::resolver(config.dns.server, config.listen.address)?;
        let signer = Signer::load(&config.dkim, &config.domain)?;
        let queue_dir = config.data_dir.join("queue");
        let queue = Queue::open(&queue_dir)?;
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
            connections: Connections::new(
                config.limits.max_connections,
                config.limits.max_connections_per_ip,
            ),
            budget: Budget::new(config.limits.max_buffered_bytes),
            config,
        })
    }
}
