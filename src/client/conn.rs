//! A line-oriented connection: TCP, optionally bound to a source address,
//! upgradable to TLS in place (STARTTLS, RFC 3207 §4; STLS, RFC 2595 §4),
//! with every line kept (and optionally printed) for evidence.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use super::tls::{Tls, TlsInfo};
use super::{CONNECT_TIMEOUT, ClientError, IO_TIMEOUT};

/// Plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// Before STARTTLS.
    Plain(TcpStream),
    /// After the handshake.
    Tls(Box<TlsStream<TcpStream>>),
    /// Transient state during the upgrade.
    Upgrading,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, b),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
            Stream::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Upgrading => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// Who sent a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// The client (us).
    Client,
    /// The server.
    Server,
    /// A note (connection, TLS upgrade).
    Note,
}

/// A connection that reads and writes CRLF lines and keeps a log of them.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Every line sent and received, in order.
    pub log: Vec<(Dir, String)>,
    /// Print lines as they pass, swaks style (`->`/`<-`, `~>`/`<~` under TLS).
    pub echo: bool,
    /// The TLS session, once there is one.
    pub tls: Option<TlsInfo>,
    /// The local address the connection left from.
    pub local: Option<SocketAddr>,
}

impl Conn {
    /// Connects to `addr`, leaving from `bind` when given (a source address
    /// on this host, e.g. another lab server's loopback address).
    pub async fn connect(addr: SocketAddr, bind: Option<IpAddr>) -> Result<Self, ClientError> {
        let err = |error| ClientError::Connect { addr, error };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(err)?;
        if let Some(ip) = bind {
            socket.bind(SocketAddr::new(ip, 0)).map_err(err)?;
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(addr))
            .await
            .map_err(|_| {
                err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {CONNECT_TIMEOUT:?} (is the server's container or process running?)"),
                ))
            })?
            .map_err(err)?;
        let local = stream.local_addr().ok();
        let mut conn = Self {
            stream: Stream::Plain(stream),
            buf: Vec::new(),
            log: Vec::new(),
            echo: false,
            tls: None,
            local,
        };
        let from = local
            .map(|l| format!(" from {}", l.ip()))
            .unwrap_or_default();
        conn.note(&format!("connected to {addr}{from}"));
        Ok(conn)
    }

    /// Connects and does the TLS handshake at once (implicit TLS, RFC 8314 §3).
    pub async fn connect_tls(
        addr: SocketAddr,
        bind: Option<IpAddr>,
        tls: &Tls,
        server_name: &str,
    ) -> Result<Self, ClientError> {
        let mut conn = Self::connect(addr, bind).await?;
        conn.upgrade(tls, server_name).await?;
        Ok(conn)
    }

    /// Same, printing the dialogue.
    pub fn echoing(mut self, echo: bool) -> Self {
        self.echo = echo;
        if echo {
            for (_, l) in &self.log {
                println!("=== {l}");
            }
        }
        self
    }

    /// Records (and maybe prints) a note.
    pub fn note(&mut self, text: &str) {
        if self.echo {
            println!("=== {text}");
        }
        self.log.push((Dir::Note, text.to_string()));
    }

    /// Does the TLS handshake on the open connection (after a positive
    /// STARTTLS/STLS reply). The chain must verify against the lab CA alone
    /// for `server_name`.
    pub async fn upgrade(&mut self, tls: &Tls, server_name: &str) -> Result<(), ClientError> {
        // RFC 3207 §4.2: nothing the server sent before the handshake may be used after it.
        self.buf.clear();
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(ClientError::Protocol("TLS is already active".into()));
        };
        let stream = tokio::time::timeout(IO_TIMEOUT, tls.connect(tcp, server_name))
            .await
            .map_err(|_| ClientError::Timeout(IO_TIMEOUT))??;
        let info = TlsInfo::of(&stream);
        self.note(&format!("TLS started: {}", info.summary()));
        self.tls = Some(info);
        self.stream = Stream::Tls(Box::new(stream));
        Ok(())
    }

    fn arrow(&self, dir: Dir) -> &'static str {
        match (dir, self.tls.is_some()) {
            (Dir::Client, false) => " -> ",
            (Dir::Client, true) => " ~> ",
            (Dir::Server, false) => "<-  ",
            (Dir::Server, true) => "<~  ",
            (Dir::Note, _) => "=== ",
        }
    }

    /// Sends one line (CRLF added). `shown` replaces the line in the log
    /// and the echo (for credentials).
    pub async fn send_line(&mut self, line: &str, shown: Option<&str>) -> Result<(), ClientError> {
        let logged = shown.unwrap_or(line).to_string();
        if self.echo {
            println!("{}{logged}", self.arrow(Dir::Client));
        }
        self.log.push((Dir::Client, logged));
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write_raw(&bytes).await
    }

    /// Sends bytes as they are (a message body), without logging each line.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        tokio::time::timeout(IO_TIMEOUT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout(IO_TIMEOUT))??;
        Ok(())
    }

    async fn fill(&mut self) -> Result<(), ClientError> {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(IO_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .map_err(|_| ClientError::Timeout(IO_TIMEOUT))??;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads one line from the server, without its CRLF.
    pub async fn read_line(&mut self) -> Result<String, ClientError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&raw)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                if self.echo {
                    println!("{}{line}", self.arrow(Dir::Server));
                }
                self.log.push((Dir::Server, line.clone()));
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    /// Reads one line, waiting at most `wait` (for IMAP IDLE); `None` when nothing came.
    pub async fn read_line_within(
        &mut self,
        wait: std::time::Duration,
    ) -> Result<Option<String>, ClientError> {
        if self.buf.contains(&b'\n') {
            return self.read_line().await.map(Some);
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            Err(_) => Ok(None),
            Ok(Ok(0)) => Err(ClientError::Closed),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.read_line().await.map(Some)
            }
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// Reads exactly `n` bytes (an IMAP literal), not logged line by line.
    pub async fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, ClientError> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        let data: Vec<u8> = self.buf.drain(..n).collect();
        self.log
            .push((Dir::Note, format!("({n} octets of message data)")));
        Ok(data)
    }

    /// Closes the connection (best effort).
    pub async fn close(&mut self) {
        let _ = tokio::time::timeout(IO_TIMEOUT, self.stream.shutdown()).await;
    }

    /// The log as text, one line per entry, swaks style.
    pub fn transcript(&self) -> String {
        let mut tls = false;
        let mut out = String::new();
        for (dir, line) in &self.log {
            let arrow = match (dir, tls) {
                (Dir::Client, false) => " -> ",
                (Dir::Client, true) => " ~> ",
                (Dir::Server, false) => "<-  ",
                (Dir::Server, true) => "<~  ",
                (Dir::Note, _) => "=== ",
            };
            if *dir == Dir::Note && line.starts_with("TLS started") {
                tls = true;
            }
            out.push_str(arrow);
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// A session that begins with a one-line greeting of the server (IMAP
/// RFC 3501 §7.1, POP3 RFC 1939 §4).
pub trait Greeted: Sized {
    /// The protocol, for errors.
    const PROTOCOL: &'static str;
    /// Whether the greeting lets the session go on.
    fn welcomes(greeting: &str) -> bool;
    /// The session on a connection whose server sent `greeting`.
    fn start(conn: Conn, greeting: String) -> Self;
}

/// Connects plain (`tls` none) or with implicit TLS, reads the greeting and
/// starts the session `S` on it.
pub async fn connect<S: Greeted>(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    tls: Option<(&Tls, &str)>,
) -> Result<S, ClientError> {
    let mut conn = match tls {
        None => Conn::connect(addr, bind).await?,
        Some((tls, name)) => Conn::connect_tls(addr, bind, tls, name).await?,
    };
    let greeting = conn.read_line().await?;
    if !S::welcomes(&greeting) {
        return Err(ClientError::Protocol(format!(
            "{} greeting: {greeting}",
            S::PROTOCOL
        )));
    }
    Ok(S::start(conn, greeting))
}
