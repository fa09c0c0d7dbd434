//! The entry point of the DNS fuzz target (`fuzz/`, `make fuzz`) and of the
//! stable test replaying its regression corpus (`tests/fuzz_replay.rs`);
//! see docs/fuzzing.md. Not part of the server's interface: always
//! compiled, small, and it runs a request the way the server does (decode
//! the message, drop responses, hand it to the lab's handler, encode the
//! answer with the protocol's size limit).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::MessageType;
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

use crate::Error;
use crate::handler::LabHandler;
use crate::query_log::QueryLog;

/// The longest a request may take: a slower one is a finding.
pub const LIMIT: Duration = Duration::from_secs(1);

/// A lab zone like the one `labctl render` writes, and the empty root.
const ZONES: [(&str, &str); 2] = [
    (
        "example.test.zone",
        "$ORIGIN example.test.\n$TTL 300\n\
         @ IN SOA ns.example.test. hostmaster.example.test. ( 7 3600 600 86400 60 )\n\
         @ IN NS ns.example.test.\nns IN A 10.0.0.53\n@ IN A 10.0.0.11\nmail IN A 10.0.0.11\n\
         @ IN MX 10 mail.example.test.\n@ IN TXT \"v=spf1 mx -all\"\n\
         s._domainkey IN TXT \"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\n\
         _dmarc IN TXT \"v=DMARC1; p=none; rua=mailto:postmaster@example.test\"\n\
         _imaps._tcp IN SRV 0 1 993 mail.example.test.\n\
         *.wild IN A 10.0.0.99\nalias IN CNAME mail.example.test.\n",
    ),
    (
        "root.zone",
        "$ORIGIN .\n$TTL 300\n@ IN SOA ns.example.test. hostmaster.example.test. ( 7 3600 600 86400 60 )\n\
         @ IN NS ns.example.test.\nns.example.test. IN A 10.0.0.53\n",
    ),
];

/// A request took longer than [`LIMIT`].
#[derive(Debug, thiserror::Error)]
#[error("request took {0:?}, over the {LIMIT:?} bound")]
pub struct Slow(pub Duration);

/// The lab's handler over fixed zones, built once per process.
pub struct Harness {
    rt: tokio::runtime::Runtime,
    handler: LabHandler,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").finish_non_exhaustive()
    }
}

/// Collects the encoded answer.
#[derive(Clone, Default)]
struct Capture {
    protocol: Option<Protocol>,
    out: Arc<Mutex<Vec<u8>>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        // RFC 1035 §4.2.1: 512 octets over UDP without EDNS; RFC 1035 §4.2.2 over TCP.
        encoder.set_max_size(match self.protocol {
            Some(Protocol::Udp) => 512,
            _ => u16::MAX,
        });
        let info = response.destructive_emit(&mut encoder)?;
        if let Ok(mut out) = self.out.lock() {
            *out = bytes;
        }
        Ok(info)
    }
}

impl Harness {
    /// Loads the zones (written to a fresh folder).
    pub fn new() -> Result<Self, Error> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir: PathBuf = std::env::temp_dir().join(format!(
            "labdns-fuzz-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let io = |source| Error::ZoneDir {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        for (name, text) in ZONES {
            std::fs::write(dir.join(name), text).map_err(io)?;
        }
        let zones = crate::zones::load_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let handler = LabHandler::new(zones?.catalog, QueryLog::open(None)?);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Serve(format!("fuzz harness runtime: {e}")))?;
        Ok(Self { rt, handler })
    }

    /// Runs one input exactly as the fuzz target does: the first byte's
    /// low bit picks TCP over UDP, the rest is the DNS message.
    pub fn run(&self, data: &[u8]) -> Result<(), Slow> {
        match data.split_first() {
            Some((first, message)) => self.query(message, first & 1 == 1).map(drop),
            None => Ok(()),
        }
    }

    /// Answers `message` as received over UDP (or TCP, without the length
    /// prefix); returns the encoded answer (`None`: not a request the
    /// server answers from its zones).
    pub fn query(&self, message: &[u8], tcp: bool) -> Result<Option<Vec<u8>>, Slow> {
        let start = Instant::now();
        let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
        let src: SocketAddr = "192.0.2.7:5353".parse().expect("address");
        let answer = match Request::from_bytes(message.to_vec(), src, protocol) {
            // Responses are never answered (no reflection).
            Ok(request) if request.metadata.message_type == MessageType::Query => {
                let capture = Capture {
                    protocol: Some(protocol),
                    ..Capture::default()
                };
                let out = capture.out.clone();
                self.rt.block_on(
                    self.handler
                        .handle_request::<_, TokioTime>(&request, capture),
                );
                let bytes = out.lock().map(|b| b.clone()).unwrap_or_default();
                Some(bytes)
            }
            _ => None,
        };
        let took = start.elapsed();
        if took > LIMIT {
            return Err(Slow(took));
        }
        Ok(answer)
    }
}
