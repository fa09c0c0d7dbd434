//! A lab as the host sees it: the addresses, ports and credentials of a
//! rendered (and usually running) lab, read from its `lab.json`, and the
//! servers' session transcripts.
//!
//! Finding the lab and reading transcripts each sit behind one function
//! ([`Lab::find`], [`Lab::transcript_lines`]): a running lab is found
//! through the runtimes (Docker labels, local state files) from any folder,
//! and a Docker lab's transcripts are read from its containers' data volumes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::plan::{Ports, RuntimeKind};
use crate::render::layout;
use crate::runtime::{LabRuntime, NodePath, NodeRef, NodeRole};

/// The mail servers' folder of session transcripts, under their data folder.
const TRANSCRIPTS: &str = "transcripts";

/// Errors of finding or reading a lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// No lab found.
    #[error("{0}")]
    NotFound(String),
    /// More than one lab, and none chosen.
    #[error("several labs found ({0}); choose one with --variant N or --dir DIR")]
    Ambiguous(String),
    /// lab.json is unreadable or malformed.
    #[error("{path}: {problem}; render the lab again (labctl render/up)")]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A mailbox not in the lab.
    #[error("{0} is not a mailbox of this lab (mailboxes: {1})")]
    UnknownMailbox(String, String),
    /// The transcripts cannot be read.
    #[error("{0}")]
    Transcripts(String),
}

/// One mailbox and its password.
#[derive(Debug, Clone, Deserialize)]
pub struct Mailbox {
    /// `user@domain`, also the login name.
    pub address: String,
    /// The password (generated at render time).
    pub password: String,
}

/// One mail server.
#[derive(Debug, Clone, Deserialize)]
pub struct Server {
    /// Its mail domain.
    pub domain: String,
    /// `mail.<domain>`.
    pub hostname: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Container name (docker runtime).
    #[serde(default)]
    pub container: String,
    /// Its ports.
    pub ports: Ports,
    /// Its mailboxes.
    pub mailboxes: Vec<Mailbox>,
}

impl Server {
    /// A socket address of this server.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), port)
    }
}

/// The DNS server.
#[derive(Debug, Clone, Deserialize)]
pub struct DnsServer {
    /// Address.
    pub ip: Ipv4Addr,
    /// Port.
    pub port: u16,
    /// Container name (docker runtime).
    #[serde(default)]
    pub container: String,
}

/// A lab, from its lab.json.
#[derive(Debug, Clone, Deserialize)]
pub struct Lab {
    /// Variant number.
    pub variant: u32,
    /// The runtime the lab was rendered for.
    pub runtime: RuntimeKind,
    /// `labNN`.
    pub name: String,
    /// The lab directory.
    pub dir: PathBuf,
    /// The subnet (CIDR).
    pub subnet: String,
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The DNS server.
    pub dns: DnsServer,
    /// Server of domain 1, then of domain 2.
    pub servers: Vec<Server>,
}

impl Lab {
    /// Reads `<dir>/lab.json`.
    pub fn load(dir: &Path) -> Result<Self, LabError> {
        let path = dir.join(layout::LAB_JSON);
        let text = std::fs::read_to_string(&path).map_err(|e| LabError::Bad {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        let mut lab: Lab = serde_json::from_str(&text).map_err(|e| LabError::Bad {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        if lab.servers.len() != 2 {
            return Err(LabError::Bad {
                path,
                problem: format!("expected 2 servers, found {}", lab.servers.len()),
            });
        }
        // The folder may have moved since rendering: trust where we found it.
        lab.dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        lab.ca_cert = lab.dir.join(layout::CA_CERT);
        Ok(lab)
    }

    /// Finds the lab to work on: `dir` when given; else a lab folder here
    /// ([`Lab::in_folder`]); else the lab of `variant` the runtimes know
    /// (Docker labels, local state files), from any folder (the only one
    /// when `variant` is `None`).
    pub async fn find(variant: Option<u32>, dir: Option<&Path>) -> Result<Self, LabError> {
        match Self::in_folder(variant, dir) {
            Err(LabError::NotFound(here)) if dir.is_none() => {
                Self::find_running(variant, here).await
            }
            found => found,
        }
    }

    /// The lab of `variant` the runtimes know; `here` says why none was found in this folder.
    async fn find_running(variant: Option<u32>, here: String) -> Result<Self, LabError> {
        // An unreachable Docker engine with no local lab is not an error
        // here: the lab may still be a rendered folder in this directory.
        let known: Vec<crate::runtime::RunningLab> = crate::runtime::discover(variant)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.dir.join(layout::LAB_JSON).is_file())
            .collect();
        match known.as_slice() {
            [one] => Self::load(&one.dir),
            [] => {
                let (which, n) = match variant {
                    Some(v) => (format!(" of variant {v}"), v.to_string()),
                    None => (String::new(), "N".to_string()),
                };
                Err(LabError::NotFound(format!(
                    "no lab{which} found: {here} and none is running; start one with `labctl up --variant {n}` or pass --dir DIR"
                )))
            }
            many => Err(LabError::Ambiguous(
                many.iter()
                    .map(|l| format!("variant {} in {}", l.variant, l.dir.display()))
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// Finds a rendered lab folder: `dir` when given, else `./lab-NN` of
    /// `variant`, else the only `./lab-*` folder holding a lab.json.
    fn in_folder(variant: Option<u32>, dir: Option<&Path>) -> Result<Self, LabError> {
        if let Some(dir) = dir {
            let lab = Self::load(dir)?;
            if let Some(v) = variant.filter(|v| *v != lab.variant) {
                return Err(LabError::NotFound(format!(
                    "{} holds variant {}, not {v}",
                    dir.display(),
                    lab.variant
                )));
            }
            return Ok(lab);
        }
        if let Some(v) = variant {
            let dir = PathBuf::from(format!("lab-{v:02}"));
            if dir.join(layout::LAB_JSON).is_file() {
                return Self::load(&dir);
            }
            return Err(LabError::NotFound(format!("no ./lab-{v:02}/lab.json here")));
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(".")
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("lab-"))
                            && p.join(layout::LAB_JSON).is_file()
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        match found.len() {
            0 => Err(LabError::NotFound("no ./lab-NN/lab.json here".into())),
            1 => Self::load(&found[0]),
            _ => Err(LabError::Ambiguous(
                found
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// The key log of labctl's own clients (docs/capture.md): written
    /// only while a capture of this lab runs.
    pub fn client_key_log(&self) -> PathBuf {
        self.dir
            .join(mailserver::tls::CaptureKeyLog::DIR)
            .join("labctl-keys.log")
    }

    /// TLS for labctl's clients of this lab (`send`, `inspect`, `verify`...):
    /// trusting the lab CA alone, and logging the sessions' secrets to the
    /// lab's capture while one runs (never otherwise).
    pub fn client_tls(&self) -> Result<crate::client::tls::Tls, crate::client::ClientError> {
        Ok(
            crate::client::tls::Tls::from_ca_file(&self.ca_cert)?.with_key_log(
                std::sync::Arc::new(mailserver::tls::CaptureKeyLog::at(self.client_key_log())),
            ),
        )
    }

    /// The DNS server's address.
    pub fn dns_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.dns.ip), self.dns.port)
    }

    /// The host's own address in the lab, when clients must bind to it
    /// ([`LabRuntime::host_address`]).
    pub fn host_ip(&self) -> Option<IpAddr> {
        LabRuntime::host_address(self.runtime, &self.subnet)
    }

    /// The DNS node, as the runtimes address it.
    pub fn dns_node(&self) -> NodeRef<'_> {
        NodeRef {
            lab_dir: &self.dir,
            container: &self.dns.container,
            role: NodeRole::Dns,
        }
    }

    /// The mail node of `server`, as the runtimes address it.
    pub fn mail_node<'a>(&'a self, server: &'a Server) -> NodeRef<'a> {
        NodeRef {
            lab_dir: &self.dir,
            container: &server.container,
            role: NodeRole::Mail(&server.domain),
        }
    }

    /// The runtime the lab runs on, connected.
    pub async fn runtime(&self) -> Result<LabRuntime, crate::runtime::RuntimeError> {
        LabRuntime::connect(self.runtime).await
    }

    /// The server of `domain`.
    pub fn server(&self, domain: &str) -> Option<&Server> {
        self.servers
            .iter()
            .find(|s| s.domain.eq_ignore_ascii_case(domain))
    }

    /// The server and mailbox of `address`.
    pub fn mailbox(&self, address: &str) -> Result<(&Server, &Mailbox), LabError> {
        self.servers
            .iter()
            .flat_map(|s| s.mailboxes.iter().map(move |m| (s, m)))
            .find(|(_, m)| m.address.eq_ignore_ascii_case(address))
            .ok_or_else(|| {
                LabError::UnknownMailbox(
                    address.to_string(),
                    self.servers
                        .iter()
                        .flat_map(|s| s.mailboxes.iter().map(|m| m.address.as_str()))
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
    }

    /// Every transcript line of the server of `domain`, as JSON text lines,
    /// file by file in name order (one file per protocol: `smtp.jsonl`...):
    /// the `transcripts` folder of the server's data, read through its runtime.
    pub async fn transcript_lines(&self, domain: &str) -> Result<Vec<String>, LabError> {
        let server = self.server(domain).ok_or_else(|| {
            LabError::Transcripts(format!("{domain} is not a domain of this lab"))
        })?;
        let failed = |e: crate::runtime::RuntimeError| {
            LabError::Transcripts(format!("transcripts of mail.{domain}: {e}"))
        };
        let files = self
            .runtime()
            .await
            .map_err(failed)?
            .read_files(&self.mail_node(server), NodePath::Data(TRANSCRIPTS))
            .await
            .map_err(failed)?;
        Ok(files
            .iter()
            .filter(|(path, _)| path.extension().is_some_and(|x| x == "jsonl"))
            .flat_map(|(_, body)| {
                String::from_utf8_lossy(body)
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// The lab DNS server's query log (JSON lines: time, client, name, type,
    /// rcode), from its node's log. Empty when there is none yet.
    pub async fn dns_query_lines(&self) -> Result<Vec<String>, LabError> {
        let failed = |e: crate::runtime::RuntimeError| {
            LabError::Transcripts(format!("the DNS query log: {e}"))
        };
        Ok(self
            .runtime()
            .await
            .map_err(failed)?
            .log_lines(&self.dns_node())
            .await
            .map_err(failed)?
            .into_iter()
            .filter(|l| l.starts_with("{\"time\""))
            .collect())
    }
}
