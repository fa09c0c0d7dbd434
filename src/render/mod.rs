//! Rendering: plan -> the lab directory (README, "The lab directory").
//!
//! Every file a server needs is written here from the minijinja templates in
//! `templates/` (embedded in the binary; a user folder overrides them by file
//! name). Secrets (CA, server keys, DKIM keys, passwords) are kept across runs
//! unless `fresh` is set, so rendering twice changes nothing.

pub mod claim;
mod secrets;
mod templates;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use minijinja::context;
use minijinja::value::Serde;
use serde::Serialize;

pub use secrets::Secrets;

use crate::plan::{DKIM_SELECTOR, Plan, RuntimeKind};

/// Where a mail server's data lives inside its container (a named volume).
pub const CONTAINER_DATA_DIR: &str = "/data";
/// Where the lab directory is mounted (read-only) inside the containers.
pub const CONTAINER_LAB_DIR: &str = "/lab";

/// Errors of rendering.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A template failed to render.
    #[error("template {name}: {source}")]
    Template {
        /// Template name.
        name: String,
        /// minijinja's error (names the line).
        source: minijinja::Error,
    },
    /// Key or certificate generation failed.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// `--dir` names a folder that labctl did not create (issue 13).
    #[error("{message}")]
    NotALabDir {
        /// What is wrong and what to do.
        message: String,
    },
    /// An existing secret file is malformed.
    #[error("{path}: {problem}; delete it or render with --fresh")]
    BadSecret {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RenderError + '_ {
    move |source| RenderError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Options of rendering.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Regenerate every secret.
    pub fresh: bool,
    /// A folder of templates overriding the embedded ones.
    pub templates: Option<PathBuf>,
}

/// What `render` wrote.
#[derive(Debug)]
pub struct Rendered {
    /// The secrets (for status and verify).
    pub secrets: Secrets,
    /// Files written, relative to the lab directory.
    pub files: Vec<PathBuf>,
}

/// The lab directory's layout, one place for every path.
pub mod layout {
    /// CA certificate.
    pub const CA_CERT: &str = "ca/ca.crt";
    /// CA key.
    pub const CA_KEY: &str = "ca/ca.key";
    /// Generated passwords.
    pub const CREDENTIALS: &str = "credentials.txt";
    /// Machine-readable description of the lab.
    pub const LAB_JSON: &str = "lab.json";
    /// Compose file.
    pub const COMPOSE: &str = "compose.yml";
    /// The marker of a lab directory (see `render::claim`).
    pub const MARKER: &str = super::claim::MARKER;
    /// Optional lab yara rules of the malware scanner (mounted when present).
    pub const SCANNER_DIR: &str = "scanner";
    /// Optional lab spam rules (mounted when present).
    pub const SPAM_DIR: &str = "spam";
    /// DNS folder (zones and the DNS server's config).
    pub const DNS_DIR: &str = "dns";
    /// The DNS query log in the local runtime (on Docker: the DNS container's output).
    pub const LOCAL_DNS_QUERY_LOG: &str = "data/dns/queries.jsonl";
    /// The DNS server's data folder in the local runtime.
    pub const LOCAL_DNS_DATA: &str = "data/dns";
    /// Server certificate of a domain.
    pub fn server_cert(domain: &str) -> String {
        format!("certs/mail.{domain}.crt")
    }
    /// Server key of a domain.
    pub fn server_key(domain: &str) -> String {
        format!("certs/mail.{domain}.key")
    }
    /// DKIM private key of a domain.
    pub fn dkim_key(domain: &str) -> String {
        format!("dkim/{domain}.key")
    }
    /// DKIM TXT value of a domain.
    pub fn dkim_txt(domain: &str) -> String {
        format!("dkim/{domain}.txt")
    }
    /// Server config of a domain.
    pub fn server_config(domain: &str) -> String {
        format!("{}/config.yaml", server_dir(domain))
    }
    /// The folder of a domain's server config.
    pub fn server_dir(domain: &str) -> String {
        format!("servers/mail.{domain}")
    }
    /// Data folder of a domain's server in the local runtime.
    pub fn local_data(domain: &str) -> String {
        format!("data/mail.{domain}")
    }
}

/// What a container mounts of the lab directory, read-only and at the same
/// path under [`CONTAINER_LAB_DIR`] (issue 13, least privilege, see
/// docs/security.md): the DNS node (`domain == None`) its zone folder; a
/// mail server the CA certificate, its own certificate, key, DKIM key and
/// config folder, and the lab's optional scanner and spam rule folders when
/// they exist. Never the CA key, never another domain's keys.
pub fn mounts(dir: &Path, domain: Option<&str>) -> Vec<String> {
    let Some(d) = domain else {
        return vec![layout::DNS_DIR.to_string()];
    };
    let mut m = vec![
        layout::CA_CERT.to_string(),
        layout::server_cert(d),
        layout::server_key(d),
        layout::dkim_key(d),
        layout::server_dir(d),
    ];
    for optional in [layout::SCANNER_DIR, layout::SPAM_DIR] {
        if dir.join(optional).is_dir() {
            m.push(optional.to_string());
        }
    }
    m
}

/// One zone file to write.
#[derive(Debug, Clone, Serialize)]
struct ZoneFile {
    origin: String,
    file: String,
}

/// Renders the lab directory of `plan`.
pub fn render(plan: &Plan, options: &RenderOptions) -> Result<Rendered, RenderError> {
    let dir = &plan.dir;
    // Before anything is written: only a folder labctl creates, an empty
    // one or one it marked before becomes a lab directory.
    claim::claim(dir, &plan.name, plan.variant.number)?;
    let secrets = Secrets::load_or_generate(plan, options.fresh)?;
    let env = templates::environment(options.templates.as_deref())?;
    let mut r = Renderer {
        env,
        plan,
        secrets: &secrets,
        out: Writer {
            dir,
            files: Vec::new(),
        },
    };
    r.dns()?;
    r.mail_configs()?;
    r.compose()?;
    let mut out = r.out;
    // Credentials and lab.json: 0600, they hold the passwords.
    out.write(
        layout::CREDENTIALS,
        &secrets.credentials.to_file(plan),
        0o600,
    )?;
    let lab = lab_json(plan, &secrets);
    out.write(
        layout::LAB_JSON,
        &(serde_json::to_string_pretty(&lab).expect("json") + "\n"),
        0o600,
    )?;
    let files = out.files;
    Ok(Rendered { secrets, files })
}

/// What the parts of a lab directory are rendered with.
struct Renderer<'a> {
    env: minijinja::Environment<'a>,
    plan: &'a Plan,
    secrets: &'a Secrets,
    out: Writer<'a>,
}

impl Renderer<'_> {
    /// The zone files (one per domain, the reverse zone, the empty root zone)
    /// and the DNS server's config.
    fn dns(&mut self) -> Result<(), RenderError> {
        let (env, plan, secrets, out) = (&self.env, self.plan, self.secrets, &mut self.out);
        let dns_ip = plan.dns.ip.to_string();
        let primary = &plan.variant.domains[0];
        let mut zones = Vec::new();
        for server in &plan.servers {
            let body = templates::render_zone(
                env,
                "domain.zone.j2",
                context! {
                    lab => plan.name.as_str(), variant => plan.variant.number, domain => server.domain.as_str(),
                    server => Serde(server), dns_ip => dns_ip.as_str(), spf_policy => plan.variant.spf_policy.as_str(),
                    dkim_selector => DKIM_SELECTOR, dkim_txt => secrets.dkim_txt(&server.domain),
                    dmarc => format!("v=DMARC1; p=none; rua=mailto:postmaster@{}", server.domain),
                },
            )?;
            zones.push(ZoneFile {
                origin: format!("{}.", server.domain),
                file: format!("{}.zone", server.domain),
            });
            out.write(&format!("dns/{}.zone", server.domain), &body, 0o644)?;
        }
        let reverse = plan.reverse_zone();
        // RFC 1035 §3.5: the PTR of a.b.c.d is d.c.b.a.in-addr.arpa; the zone holds d.
        let ptrs: Vec<_> = plan
            .servers
            .iter()
            .map(|s| (s.ip, s.hostname.clone()))
            .chain([(plan.dns.ip, format!("ns.{primary}"))])
            .map(|(ip, name)| serde_json::json!({ "host": ip.octets()[3], "name": name }))
            .collect();
        let body = templates::render_zone(
            env,
            "reverse.zone.j2",
            context! { zone => reverse.as_str(), subnet => plan.subnet_cidr(), primary_domain => primary.as_str(),
            ptrs => Serde(&ptrs) },
        )?;
        out.write(&format!("dns/{reverse}.zone"), &body, 0o644)?;
        zones.push(ZoneFile {
            origin: format!("{reverse}."),
            file: format!("{reverse}.zone"),
        });
        let body = templates::render_zone(
            env,
            "root.zone.j2",
            context! { primary_domain => primary.as_str(), dns_ip => dns_ip.as_str() },
        )?;
        out.write("dns/root.zone", &body, 0o644)?;
        zones.push(ZoneFile {
            origin: ".".into(),
            file: "root.zone".into(),
        });
        let body = templates::render(
            env,
            "dns.yaml.j2",
            context! { dns_ip => dns_ip.as_str(), dns_port => plan.dns.port, zones => Serde(&zones),
            query_log => match plan.runtime {
                RuntimeKind::Docker => "/dev/stdout".to_string(),
                RuntimeKind::Local => "../data/dns/queries.jsonl".to_string(),
            } },
        )?;
        out.write("dns/config.yaml", &body, 0o644)?;
        Ok(())
    }

    /// Each mail server's config (0600: it holds the password hashes).
    fn mail_configs(&mut self) -> Result<(), RenderError> {
        let (env, plan, secrets, out) = (&self.env, self.plan, self.secrets, &mut self.out);
        let dns_ip = plan.dns.ip.to_string();
        let spf = plan.variant.spf();
        for server in &plan.servers {
            let mailboxes: Vec<_> = server
                .mailboxes
                .iter()
                .map(|address| {
                    context! { address => address, password_hash => secrets.credentials.password_hash(address) }
                })
                .collect();
            let data_dir = match plan.runtime {
                RuntimeKind::Docker => CONTAINER_DATA_DIR.to_string(),
                RuntimeKind::Local => format!("../../{}", layout::local_data(&server.domain)),
            };
            let body = templates::render(
                env,
                "mailserver.yaml.j2",
                context! {
                    lab => plan.name.as_str(), variant => plan.variant.number, server => Serde(server),
                    listen_address => server.ip.to_string(), dns_ip => dns_ip.as_str(), dns_port => plan.dns.port,
                    data_dir => data_dir.as_str(), mailboxes => &mailboxes, dkim_selector => DKIM_SELECTOR,
                    spf_policy => plan.variant.spf_policy.as_str(), spf_hard_fail => spf.is_hard_fail(),
                    relay_port => server.ports.smtp,
                },
            )?;
            // 0600: it holds the password hashes (the servers run as the owner).
            out.write(&layout::server_config(&server.domain), &body, 0o600)?;
        }
        Ok(())
    }

    /// The compose file: the same lab as `labctl up` builds, for
    /// `docker compose` (compose/README.md).
    fn compose(&mut self) -> Result<(), RenderError> {
        let (env, plan, out) = (&self.env, self.plan, &mut self.out);
        let dir = &plan.dir;
        let body = templates::render(
            env,
            "compose.yml.j2",
            context! { plan => Serde(plan), subnet_cidr => plan.subnet_cidr(), version => env!("CARGO_PKG_VERSION"), data_dir => CONTAINER_DATA_DIR,
            lab_dir => CONTAINER_LAB_DIR, dns_port => plan.dns.port, labels => compose_labels(plan),
            mounts => context! {
                dns => mounts(dir, None),
                mail => plan.servers.iter().map(|s| (s.domain.clone(), mounts(dir, Some(&s.domain))))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            } },
        )?;
        out.write(layout::COMPOSE, &body, 0o644)
    }
}

/// The labels of every object of compose.yml, the same set `labctl up`
/// puts on them (minus the convergence hash), as YAML `key: "value"` lines.
fn compose_labels(plan: &Plan) -> minijinja::Value {
    use crate::naming::labels::{Object, labels};
    let lines = |object: Object<'_>| -> Vec<String> {
        let sorted: std::collections::BTreeMap<String, String> =
            labels(plan.variant.number.into(), &plan.dir, object, None)
                .into_iter()
                .collect();
        sorted
            .into_iter()
            .map(|(k, v)| format!("{k}: {}", serde_json::Value::String(v)))
            .collect()
    };
    let per_domain = |volume: bool| -> std::collections::BTreeMap<String, Vec<String>> {
        plan.servers
            .iter()
            .map(|s| {
                let object = if volume {
                    Object::Volume(&s.domain)
                } else {
                    Object::Mail(&s.domain)
                };
                (s.domain.clone(), lines(object))
            })
            .collect()
    };
    context! {
        dns => lines(Object::Dns),
        network => lines(Object::Network),
        mail => per_domain(false),
        volume => per_domain(true),
    }
}

/// The machine-readable description of the lab (`lab.json`); `status --json`
/// prints the same shape.
pub fn lab_json(plan: &Plan, secrets: &Secrets) -> serde_json::Value {
    let servers: Vec<_> = plan
        .servers
        .iter()
        .map(|s| {
            serde_json::json!({
                "domain": s.domain,
                "hostname": s.hostname,
                "ip": s.ip.to_string(),
                "container": s.container,
                "ports": s.ports,
                "mailboxes": s.mailboxes.iter().map(|m| serde_json::json!({
                    "address": m, "password": secrets.credentials.password(m),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "variant": plan.variant.number,
        "runtime": plan.runtime.as_str(),
        "name": plan.name,
        "dir": plan.dir,
        "subnet": plan.subnet_cidr(),
        "ca_cert": plan.dir.join(layout::CA_CERT),
        "dns": { "ip": plan.dns.ip.to_string(), "port": plan.dns.port, "container": plan.dns.container },
        "servers": servers,
    })
}

/// Writes files under the lab directory, only when their content changed
/// (so an unchanged lab keeps its modification times).
struct Writer<'a> {
    dir: &'a Path,
    files: Vec<PathBuf>,
}

impl Writer<'_> {
    fn write(&mut self, rel: &str, content: &str, mode: u32) -> Result<(), RenderError> {
        write_file(&self.dir.join(rel), content.as_bytes(), mode)?;
        self.files.push(PathBuf::from(rel));
        Ok(())
    }
}

/// Writes `content` to `path` with `mode` unless it already holds exactly that;
/// a file with a secret is created with its mode, never widened afterwards.
pub(crate) fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<(), RenderError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    if fs::read(path).is_ok_and(|old| old == content) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))?;
        return Ok(());
    }
    let tmp = path.with_extension("tmp~");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(&tmp))?;
    f.write_all(content).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}
