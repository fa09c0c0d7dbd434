//! The command line: plain data (clap derive). Nothing here acts; `main`
//! dispatches each command to its module under `commands/`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::plan::RuntimeKind;

/// labctl: a complete two-domain e-mail lab (CA, DNS, two mail servers), offline, in seconds.
#[derive(Debug, Parser)]
#[command(
    name = "labctl",
    version,
    about,
    after_help = "Examples:\n  labctl up --variant 7     bring the lab of variant 7 up on Docker\n  labctl verify             check every requirement of the assignment\n  labctl down               remove it again\n\nEnvironment:\n  LABCTL_INSTANCE=NAME       a separate set of labs, named NAME-labNN, that other sets\n                             do not see or remove (the test suite runs as `test`)\n\nExit codes: 0 ok, 1 a check failed, 2 usage error, 3 environment problem."
)]
pub struct Cli {
    /// Folder of extra variant files (NN.yaml) that add to or override the built-in ones.
    #[arg(long, global = true, env = "LABCTL_VARIANTS", value_name = "DIR")]
    pub variants_dir: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the variants of the assignment.
    #[command(after_help = "Examples:\n  labctl variants\n  labctl variants --json")]
    Variants {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write the lab directory (CA, certificates, DKIM keys, zones, server configs) without starting anything.
    #[command(
        after_help = "Examples:\n  labctl render --variant 7\n  labctl render --variant 7 --dir /tmp/lab --fresh"
    )]
    Render(RenderArgs),
    /// Render the lab and start it: DNS and both mail servers.
    #[command(
        after_help = "Examples:\n  labctl up --variant 7\n  labctl up --variant 7 --runtime local\n  labctl up --variant 3 --subnet 10.99.3.0/24"
    )]
    Up(UpArgs),
    /// Show running labs.
    #[command(after_help = "Examples:\n  labctl status\n  labctl status --variant 7 --json")]
    Status {
        /// Only this variant.
        #[arg(long)]
        variant: Option<u32>,
        /// Print JSON (a stable schema, see README).
        #[arg(long)]
        json: bool,
    },
    /// Check every requirement of the assignment against the running lab.
    #[command(
        after_help = "Examples:\n  labctl verify\n  labctl verify --variant 7 --only R8 --only R9\n  labctl verify --junit report.xml"
    )]
    Verify {
        /// The lab to check (default: the only one running).
        #[arg(long)]
        variant: Option<u32>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write a JUnit XML report to FILE.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Only these requirement ids (R1..R13).
        #[arg(long, value_name = "ID")]
        only: Vec<String>,
        /// List the checks without running them.
        #[arg(long)]
        list: bool,
        /// The lab directory (default: the only ./lab-NN, or ./lab-NN of --variant).
        #[arg(long, value_name = "DIR", env = "LABCTL_LAB")]
        dir: Option<PathBuf>,
    },
    /// Stop and remove a lab.
    #[command(
        after_help = "Examples:\n  labctl down\n  labctl down --variant 7 --purge\n  labctl down --all"
    )]
    Down {
        /// The lab to remove.
        #[arg(long, conflicts_with = "all")]
        variant: Option<u32>,
        /// Remove every lab.
        #[arg(long)]
        all: bool,
        /// Also remove the data volumes and the lab directory.
        #[arg(long)]
        purge: bool,
    },
    /// Show the logs of a lab's servers.
    #[command(after_help = "Examples:\n  labctl logs\n  labctl logs mail.metal.com --follow")]
    Logs {
        /// The lab.
        #[arg(long)]
        variant: Option<u32>,
        /// One server (`dns` or `mail.<domain>`).
        server: Option<String>,
        /// Keep printing new lines.
        #[arg(long)]
        follow: bool,
    },
    /// Show the SMTP conversations that carried a message, hop by hop.
    #[command(
        after_help = "Examples:\n  labctl trace\n  labctl trace --message-id '<abc@metal.com>'"
    )]
    Trace {
        /// The lab.
        #[arg(long)]
        variant: Option<u32>,
        /// The message (default: the last one).
        #[arg(long)]
        message_id: Option<String>,
        /// The lab directory (default: the only ./lab-NN, or ./lab-NN of --variant).
        #[arg(long, value_name = "DIR", env = "LABCTL_LAB")]
        dir: Option<PathBuf>,
    },
    /// Send a message by authenticated submission, printing the SMTP dialogue.
    #[command(
        after_help = "Examples:\n  labctl send --from gold@metal.com --to copper@zone07.org --subject Hello\n  labctl send --from gold@metal.com --to copper@zone07.org --eicar"
    )]
    Send(SendArgs),
    /// Fetch a message over IMAPS and explain its headers.
    #[command(
        after_help = "Examples:\n  labctl inspect copper@zone07.org --last\n  labctl inspect copper@zone07.org --uid 3"
    )]
    Inspect {
        /// The mailbox.
        address: String,
        /// The newest message (the default).
        #[arg(long, conflicts_with = "uid")]
        last: bool,
        /// The message with this UID.
        #[arg(long)]
        uid: Option<u32>,
        /// The folder.
        #[arg(long, default_value = "INBOX")]
        folder: String,
        /// The lab.
        #[arg(long)]
        variant: Option<u32>,
        /// The lab directory (default: the only ./lab-NN, or ./lab-NN of --variant).
        #[arg(long, value_name = "DIR", env = "LABCTL_LAB")]
        dir: Option<PathBuf>,
    },
    /// Record the lab's traffic into a pcapng file that Wireshark decrypts (TLS secrets inside).
    #[command(
        after_help = "Examples:\n  labctl capture --replay -o story.pcapng\n  labctl capture --duration 30 --node mail.metal.com\n  labctl capture              (until Ctrl-C)\n\nThe file holds the TLS secrets of every recorded session: it is for the lab only (docs/capture.md)."
    )]
    Capture(CaptureArgs),
    /// Query the lab DNS.
    #[command(
        after_help = "Examples:\n  labctl dns metal.com MX\n  labctl dns lab._domainkey.metal.com TXT\n  labctl dns 10.77.7.11 PTR"
    )]
    Dns(DnsArgs),
    /// Train the spam filter.
    #[command(subcommand)]
    Spam(SpamCommand),
    /// Create the image labctl:<version> from this executable (`up` does it when the image is absent).
    #[command(after_help = "Examples:\n  labctl image\n  make image")]
    Image,
    /// Check that this machine is ready to run labs.
    #[command(after_help = "Examples:\n  labctl doctor")]
    Doctor,
    /// Run the lab DNS server (the DNS container's entrypoint).
    #[command(hide = true)]
    ServeDns(ServeDnsArgs),
    /// Run a mail server (the mail containers' entrypoint).
    #[command(hide = true)]
    ServeMail(ServeMailArgs),
    /// Capture the packets of this node's network namespace to stdout (the
    /// capture containers' command), or switch a mail server's TLS key log.
    #[command(hide = true)]
    CaptureNode(CaptureNodeArgs),
    /// Send one unauthenticated SMTP transaction and print the replies as
    /// JSON (what `verify` runs inside a mail container to send from the
    /// server's own address).
    #[command(hide = true)]
    Inject(InjectArgs),
}

/// Options of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Variant number.
    #[arg(long)]
    pub variant: u32,
    /// Lab directory (default: ./lab-NN).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Regenerate the CA, keys and passwords.
    #[arg(long)]
    pub fresh: bool,
    /// Runtime the addresses are planned for.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Docker)]
    pub runtime: RuntimeKind,
    /// Lab subnet (a /24), default 10.77.N.0/24.
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// Folder of templates overriding the built-in ones (same file names).
    #[arg(long, value_name = "DIR", env = "LABCTL_TEMPLATES")]
    pub templates: Option<PathBuf>,
}

/// Options of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// What to render.
    #[command(flatten)]
    pub render: RenderArgs,
    /// Recreate containers even if nothing changed.
    #[arg(long)]
    pub recreate: bool,
    /// Keep what was created when `up` fails (for debugging).
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Seconds to wait until every service answers.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// Options of `send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Sender mailbox (its password is read from the lab's credentials).
    #[arg(long)]
    pub from: String,
    /// Recipient.
    #[arg(long)]
    pub to: String,
    /// Subject.
    #[arg(long, default_value = "Hello from labctl")]
    pub subject: String,
    /// Body text.
    #[arg(long, default_value = "This is a message sent with labctl send.")]
    pub body: String,
    /// Attach a file.
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,
    /// Attach the EICAR anti-malware test file.
    #[arg(long)]
    pub eicar: bool,
    /// Put the GTUBE spam test string in the body.
    #[arg(long)]
    pub gtube: bool,
    /// Submit on 465 (implicit TLS) instead of 587 with STARTTLS.
    #[arg(long)]
    pub implicit_tls: bool,
    /// The lab.
    #[arg(long)]
    pub variant: Option<u32>,
    /// The lab directory (default: the only ./lab-NN, or ./lab-NN of --variant).
    #[arg(long, value_name = "DIR", env = "LABCTL_LAB")]
    pub dir: Option<PathBuf>,
}

/// Options of `capture`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The lab.
    #[arg(long)]
    pub variant: Option<u32>,
    /// The lab directory (default: the only ./lab-NN, or ./lab-NN of --variant).
    #[arg(long, value_name = "DIR", env = "LABCTL_LAB")]
    pub dir: Option<PathBuf>,
    /// The pcapng file to write (default: capture-labNN.pcapng).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Stop after S seconds (default: at Ctrl-C, or when --replay is done).
    #[arg(long, value_name = "S")]
    pub duration: Option<u64>,
    /// The nodes to record: dns, mail.<domain>, or all (may be given more than once).
    #[arg(long, value_name = "NODE", default_value = "all")]
    pub node: Vec<String>,
    /// Send a message each way (587 and 465), relay it, and read it over IMAPS and POP3S while recording, then stop.
    #[arg(long, conflicts_with = "duration")]
    pub replay: bool,
}

/// Options of the internal `capture-node`.
#[derive(Debug, Args)]
pub struct CaptureNodeArgs {
    /// Create this (empty) TLS key log: the server logs its secrets into it.
    #[arg(long, value_name = "FILE", conflicts_with = "key_log_off")]
    pub key_log_on: Option<PathBuf>,
    /// Remove this TLS key log: the server logs no secret any more.
    #[arg(long, value_name = "FILE")]
    pub key_log_off: Option<PathBuf>,
}

/// Options of `dns`.
#[derive(Debug, Args)]
pub struct DnsArgs {
    /// The name (or an IPv4 address for PTR).
    pub name: String,
    /// Record type (A, MX, TXT, PTR, SRV, SOA, NS...).
    #[arg(default_value = "A")]
    pub record_type: String,
    /// Ask this server instead of the running lab's.
    #[arg(long, value_name = "ADDR:PORT")]
    pub server: Option<SocketAddr>,
    /// The lab.
    #[arg(long)]
    pub variant: Option<u32>,
}

/// `spam` subcommands.
#[derive(Debug, Subcommand)]
pub enum SpamCommand {
    /// Train the classifier of a running lab's servers with messages.
    #[command(
        after_help = "Examples:\n  labctl spam train --spam junk1.eml junk2.eml\n  labctl spam train --ham newsletter.eml"
    )]
    Train {
        /// The files are spam.
        #[arg(long, conflicts_with = "ham", required_unless_present = "ham")]
        spam: bool,
        /// The files are ham.
        #[arg(long)]
        ham: bool,
        /// Messages (RFC 5322 files).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The lab (default: the one in this folder, else the running one).
        #[arg(long, conflicts_with = "config")]
        variant: Option<u32>,
        /// Train only the server of this config.yaml (what runs inside a container).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Remove the files once trained (with --config).
        #[arg(long, hide = true, requires = "config")]
        consume: bool,
    },
}

/// Options of `serve-dns`.
#[derive(Debug, Args)]
pub struct ServeDnsArgs {
    /// Folder of BIND zone files (*.zone).
    #[arg(long, value_name = "DIR")]
    pub zones: PathBuf,
    /// Address to listen on, UDP and TCP (may be given twice).
    #[arg(long, value_name = "ADDR:PORT", required = true)]
    pub listen: Vec<SocketAddr>,
    /// Write one JSON line per query here.
    #[arg(long, value_name = "FILE")]
    pub query_log: Option<PathBuf>,
}

/// Options of the internal `inject`.
#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The SMTP server.
    #[arg(long, value_name = "ADDR:PORT")]
    pub server: SocketAddr,
    /// The local address to send from (the node's own; default: any).
    #[arg(long, value_name = "IP")]
    pub bind: Option<std::net::IpAddr>,
    /// The EHLO name.
    #[arg(long)]
    pub helo: String,
    /// STARTTLS, verifying the server certificate for this name against --ca.
    #[arg(long, value_name = "NAME", requires = "ca")]
    pub tls_name: Option<String>,
    /// The CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The envelope sender (empty for the null sender).
    #[arg(long, default_value = "")]
    pub mail_from: String,
    /// The envelope recipient.
    #[arg(long)]
    pub rcpt: String,
    /// A message, base64; repeated: one transaction each, in one session.
    #[arg(long, value_name = "BASE64", required = true)]
    pub message_base64: Vec<String>,
}

/// Options of `serve-mail`.
#[derive(Debug, Args)]
pub struct ServeMailArgs {
    /// The server's config.yaml.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Only compile the scanner's yara-x rules and write them, serialized,
    /// to stdout (serve-mail runs itself so to keep the compiler out of the
    /// server's memory).
    #[arg(long, hide = true)]
    pub compile_scanner_rules: bool,
}
