//! DNS lookups that go to the lab DNS server and nowhere else (no system
//! resolver, no hosts file).
//!
//! [`query`] sends the question itself (RFC 1035 §4.2: UDP, TCP when the
//! answer is truncated): hickory's resolver answers names under
//! `127.in-addr.arpa` and `.invalid` locally without asking (RFC 6761), so
//! the PTR records of the local runtime's loopback addresses could not be
//! checked through it. [`resolver`] is for mail-auth's DKIM verification.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ClientError;

/// A resolver pointed at one server.
pub fn resolver(server: SocketAddr) -> Result<TokioResolver, ClientError> {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    let mut ns = NameServerConfig::udp_and_tcp(server.ip());
    ns.connections = vec![udp, tcp];
    let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
    let mut opts = ResolverOpts::default();
    opts.use_hosts_file = ResolveHosts::Never;
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.timeout = std::time::Duration::from_secs(2);
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| ClientError::Dns(e.to_string()))
}

/// How long one DNS exchange may take.
const DNS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The answers of one query to `server` as text, one per record (`10
/// mail.metal.com.`; TXT strings joined without separator as RFC 7208 §3.3
/// and RFC 6376 §3.6.2.2 ask). An empty list for NXDOMAIN or no data. For
/// PTR, `name` may be an IPv4 address.
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Result<Vec<String>, ClientError> {
    let name = match (rtype, name.parse::<IpAddr>()) {
        (RecordType::PTR, Ok(IpAddr::V4(ip))) => {
            let o = ip.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        _ if name.ends_with('.') => name.to_string(),
        _ => format!("{name}."),
    };
    let qname = Name::from_ascii(&name).map_err(|e| ClientError::Dns(format!("{name}: {e}")))?;
    let mut msg = Message::query();
    msg.metadata.id = rand::random();
    // The lab DNS is authoritative and does no recursion (docs/dns.md).
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(qname, rtype));
    let wire = msg
        .to_vec()
        .map_err(|e| ClientError::Dns(format!("{name}: {e}")))?;
    let exchange = async {
        let mut answer = udp_exchange(server, &wire).await?;
        if answer.metadata.truncation {
            answer = tcp_exchange(server, &wire).await?;
        }
        Ok::<_, ClientError>(answer)
    };
    let answer = tokio::time::timeout(DNS_TIMEOUT * 2, exchange)
        .await
        .map_err(|_| ClientError::Dns(format!("{name} {rtype}: no answer from {server}")))??;
    match answer.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(answer
            .answers
            .iter()
            .filter(|r| r.record_type() == rtype)
            .map(|r| rdata_text(&r.data))
            .collect()),
        code => Err(ClientError::Dns(format!(
            "{name} {rtype}: {code} from {server}"
        ))),
    }
}

fn dns_err(server: SocketAddr) -> impl Fn(std::io::Error) -> ClientError {
    move |e| ClientError::Dns(format!("{server}: {e}"))
}

async fn udp_exchange(server: SocketAddr, wire: &[u8]) -> Result<Message, ClientError> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal address");
    let sock = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(dns_err(server))?;
    sock.connect(server).await.map_err(dns_err(server))?;
    sock.send(wire).await.map_err(dns_err(server))?;
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(DNS_TIMEOUT, sock.recv(&mut buf))
        .await
        .map_err(|_| ClientError::Dns(format!("{server}: no answer over UDP")))?
        .map_err(dns_err(server))?;
    Message::from_vec(&buf[..n]).map_err(|e| ClientError::Dns(format!("{server}: {e}")))
}

/// RFC 1035 §4.2.2: each message prefixed by its length, two octets.
async fn tcp_exchange(server: SocketAddr, wire: &[u8]) -> Result<Message, ClientError> {
    let mut tcp = tokio::net::TcpStream::connect(server)
        .await
        .map_err(dns_err(server))?;
    let mut out = (wire.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(wire);
    tcp.write_all(&out).await.map_err(dns_err(server))?;
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).await.map_err(dns_err(server))?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    tcp.read_exact(&mut buf).await.map_err(dns_err(server))?;
    Message::from_vec(&buf).map_err(|e| ClientError::Dns(format!("{server}: {e}")))
}

/// One record's data as text.
pub fn rdata_text(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect::<Vec<_>>()
            .concat(),
        other => other.to_string(),
    }
}
