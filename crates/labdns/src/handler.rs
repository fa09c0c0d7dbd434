//! The request handler: hickory's [`Catalog`] behind a swappable pointer, so a
//! reload replaces every zone at once while queries in flight finish on the
//! zones they started with, plus the query log.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::Catalog;

use crate::query_log::{Entry, QueryLog, now, rcode_mnemonic};

/// Answers from the current zones and logs every query.
pub struct LabHandler {
    catalog: RwLock<Arc<Catalog>>,
    log: QueryLog,
}

impl LabHandler {
    /// A handler serving `catalog`.
    pub fn new(catalog: Catalog, log: QueryLog) -> Self {
        Self {
            catalog: RwLock::new(Arc::new(catalog)),
            log,
        }
    }

    /// Serves `catalog` from the next query on.
    pub fn replace(&self, catalog: Catalog) {
        let fresh = Arc::new(catalog);
        match self.catalog.write() {
            Ok(mut current) => *current = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    fn current(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

#[async_trait]
impl RequestHandler for LabHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let catalog = self.current();
        let info = catalog
            .handle_request::<R, T>(request, response_handle)
            .await;
        let (name, record_type) = match request.queries.queries().first() {
            Some(q) => (q.name().to_string(), q.query_type().to_string()),
            None => (String::new(), String::new()),
        };
        let protocol = request.protocol().to_string();
        self.log.write(&Entry {
            time: now(),
            client: request.src(),
            proto: &protocol,
            name: &name,
            record_type: &record_type,
            rcode: &rcode_mnemonic(u16::from(info.response_code)),
        });
        info
    }
}
