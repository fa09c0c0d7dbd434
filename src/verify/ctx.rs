//! What every check needs: the lab, its variant, TLS trusting the lab CA,
//! a resolver asking the lab DNS, and the messages the run sends once and
//! several checks read (the probe messages, one each way).

use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use tokio::sync::OnceCell;

use super::messages;
use crate::client::conn::connect;
use crate::client::imap::Imap;
use crate::client::smtp::{Relayed, Reply, Smtp};
use crate::client::tls::Tls;
use crate::client::{ClientError, dns};
use crate::lab::{Lab, Mailbox, Server};
use crate::runtime::{Arg, ExecOutput, NodePath};
use crate::variant::Variant;

/// How long a check waits for a message to arrive.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(8);
/// Longest single IMAP IDLE before the mailbox is searched again.
const IDLE_SLICE: Duration = Duration::from_millis(700);
/// EHLO name the checks use: in no lab zone, so it has no SPF record.
pub const EHLO_NAME: &str = "verify.labctl.invalid";

/// A message the run sent and found delivered.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Sender mailbox.
    pub from: String,
    /// Recipient mailbox.
    pub to: String,
    /// Its Message-ID, with angle brackets.
    pub message_id: String,
    /// The final reply of the submission.
    pub submitted: String,
    /// The message as the recipient's IMAP server returned it.
    pub raw: Vec<u8>,
}

/// The outcome of a submission.
#[derive(Debug)]
pub struct Submission {
    /// The reply to the end of DATA (or to the command that failed).
    pub reply: Reply,
    /// Whether the message was accepted (2xx after DATA).
    pub accepted: bool,
    /// Whether `reply` answers the end of DATA (the message was transferred).
    pub end_of_data: bool,
    /// The dialogue.
    pub transcript: String,
}

/// The shared state of one verify run.
pub struct Ctx {
    /// The lab.
    pub lab: Lab,
    /// Its variant (CA name, SPF policy).
    pub variant: Variant,
    /// TLS trusting the lab CA alone.
    pub tls: Tls,
    /// Resolver asking the lab DNS alone.
    pub resolver: TokioResolver,
    /// A token unique to this run, in every Message-ID it sends.
    pub token: String,
    probes: OnceCell<Vec<Result<Delivered, String>>>,
}

impl Ctx {
    /// Prepares a run against `lab`.
    pub fn new(lab: Lab, variant: Variant) -> Result<Self, ClientError> {
        let tls = lab.client_tls()?;
        let resolver = dns::resolver(lab.dns_addr())?;
        let token = format!(
            "{:x}{:04x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            rand::random::<u16>()
        );
        Ok(Self {
            lab,
            variant,
            tls,
            resolver,
            token,
            probes: OnceCell::new(),
        })
    }

    /// Server `i` (0: domain 1, 1: domain 2).
    pub fn server(&self, i: usize) -> &Server {
        &self.lab.servers[i]
    }

    /// The first mailbox of server `i`.
    pub fn mailbox(&self, i: usize) -> &Mailbox {
        &self.lab.servers[i].mailboxes[0]
    }

    /// The server holding `address`.
    pub fn server_of(&self, address: &str) -> &Server {
        let domain = address.rsplit('@').next().unwrap_or("");
        self.lab.server(domain).unwrap_or(&self.lab.servers[0])
    }

    /// Sends `messages` (one transaction each, in one session) from
    /// `sender`'s own address to `receiver`'s MX as that server's relay
    /// would (EHLO its host name, STARTTLS, no AUTH).
    /// The transaction is run inside the sender's node (`labctl inject
    /// --bind <its address>`, through the lab's runtime), so it leaves from
    /// the sender's own address on either runtime.
    pub async fn relay_from(
        &self,
        sender: &Server,
        receiver: &Server,
        mail_from: &str,
        rcpt: &str,
        messages: &[Vec<u8>],
    ) -> Result<Vec<Relayed>, String> {
        let mx = receiver.addr(receiver.ports.smtp);
        use base64::Engine;
        let runtime = self.lab.runtime().await.map_err(|e| e.to_string())?;
        let mut args: Vec<Arg<'_>> = vec![
            "inject".into(),
            "--bind".into(),
            sender.ip.to_string().into(),
            "--server".into(),
            mx.to_string().into(),
            "--helo".into(),
            sender.hostname.as_str().into(),
            "--tls-name".into(),
            receiver.hostname.as_str().into(),
            "--ca".into(),
            Arg::Path(NodePath::Lab(crate::render::layout::CA_CERT)),
            "--mail-from".into(),
            mail_from.into(),
            "--rcpt".into(),
            rcpt.into(),
        ];
        for m in messages {
            args.push("--message-base64".into());
            args.push(base64::engine::general_purpose::STANDARD.encode(m).into());
        }
        let ExecOutput {
            code,
            stdout,
            stderr,
        } = runtime
            .exec_labctl(&self.lab.mail_node(sender), &args)
            .await
            .map_err(|e| e.to_string())?;
        let out = String::from_utf8_lossy(&stdout);
        if code == 0
            && let Ok(relayed) = serde_json::from_str::<Vec<Relayed>>(out.trim())
            && relayed.len() == messages.len()
        {
            return Ok(relayed);
        }
        Err(format!(
            "labctl inject in {} exited {code}: {}{}",
            sender.container,
            out.trim(),
            String::from_utf8_lossy(&stderr).trim()
        ))
    }

    /// Submits `message` as `from` (authenticated, 587 with STARTTLS).
    pub async fn submit(
        &self,
        from: &Mailbox,
        to: &str,
        message: &[u8],
    ) -> Result<Submission, ClientError> {
        let mut all = self.submit_many(from, to, &[message.to_vec()]).await?;
        Ok(all.remove(0))
    }

    /// Submits `messages` as `from`, one transaction each in one
    /// authenticated session (587 with STARTTLS); RSET after a refused MAIL
    /// or RCPT (RFC 5321 §4.1.1.5). A refused session step (STARTTLS, AUTH)
    /// is the outcome of every message.
    pub async fn submit_many(
        &self,
        from: &Mailbox,
        to: &str,
        messages: &[Vec<u8>],
    ) -> Result<Vec<Submission>, ClientError> {
        let server = self.server_of(&from.address);
        let mut smtp = Smtp::connect(
            server.addr(server.ports.submission),
            self.lab.host_ip(),
            None,
            false,
        )
        .await?;
        let refused = |reply: &Reply, smtp: &Smtp| Submission {
            reply: reply.clone(),
            accepted: false,
            end_of_data: false,
            transcript: smtp.conn.transcript(),
        };
        for step in ["EHLO", "STARTTLS", "EHLO", "AUTH"] {
            let reply = match step {
                "STARTTLS" => smtp.starttls(&self.tls, &server.hostname).await?,
                "AUTH" => smtp.auth_plain(&from.address, &from.password).await?,
                _ => smtp.ehlo(EHLO_NAME).await?,
            };
            if !reply.is_positive() && reply.code != 220 {
                smtp.quit().await;
                return Ok(messages.iter().map(|_| refused(&reply, &smtp)).collect());
            }
        }
        let mut out = Vec::new();
        for message in messages {
            let mail = smtp
                .command(&format!("MAIL FROM:<{}>", from.address))
                .await?;
            let rcpt = if mail.is_positive() {
                smtp.command(&format!("RCPT TO:<{to}>")).await?
            } else {
                mail
            };
            if !rcpt.is_positive() {
                out.push(refused(&rcpt, &smtp));
                smtp.command("RSET").await?;
                continue;
            }
            let (go, done) = smtp.data(message).await?;
            let end_of_data = done.is_some();
            let reply = done.unwrap_or(go);
            if !end_of_data {
                smtp.command("RSET").await?;
            }
            out.push(Submission {
                accepted: end_of_data && reply.is_positive(),
                end_of_data,
                reply,
                transcript: smtp.conn.transcript(),
            });
        }
        smtp.quit().await;
        Ok(out)
    }

    /// Waits until a message whose header holds `message_id` is in `folder`
    /// of `mailbox`, over IMAPS, with IDLE (RFC 2177) between searches;
    /// `Ok(None)` when the deadline passes.
    pub async fn wait_for(
        &self,
        mailbox: &Mailbox,
        folder: &str,
        message_id: &str,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let server = self.server_of(&mailbox.address);
        let mut imap = connect::<Imap>(
            server.addr(server.ports.imaps),
            self.lab.host_ip(),
            Some((&self.tls, &server.hostname)),
        )
        .await?;
        let login = imap.login(&mailbox.address, &mailbox.password).await?;
        if !login.is_ok() {
            return Err(ClientError::Protocol(format!(
                "IMAP LOGIN: {}",
                login.status
            )));
        }
        let idle = imap.capabilities().await?.iter().any(|c| c == "IDLE");
        let mut seen = std::collections::BTreeSet::new();
        let mut selected = false;
        loop {
            if !selected {
                selected = imap.select(folder).await?.is_ok();
            }
            if selected {
                for uid in imap.uids().await?.into_iter().rev() {
                    if !seen.insert(uid) {
                        continue;
                    }
                    if let Some(raw) = imap.fetch(uid).await?
                        && messages::has_message_id(&raw, message_id)
                    {
                        imap.logout().await;
                        return Ok(Some(raw));
                    }
                }
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                imap.logout().await;
                return Ok(None);
            };
            if selected && idle {
                imap.idle(left.min(IDLE_SLICE)).await?;
            } else {
                // Short poll: the folder does not exist yet or the server has no IDLE.
                tokio::time::sleep(left.min(Duration::from_millis(100))).await;
                if selected {
                    imap.command("NOOP").await?;
                }
            }
        }
    }

    /// Waits for the message in whichever of `folders` it lands in (the
    /// first to find it wins); `Ok(None)` when none has it by `deadline`.
    pub async fn wait_in_any(
        &self,
        mailbox: &Mailbox,
        folders: &[&str],
        message_id: &str,
        deadline: Instant,
    ) -> Result<Option<(String, Vec<u8>)>, ClientError> {
        let waits = folders.iter().map(|f| {
            Box::pin(async move {
                match self.wait_for(mailbox, f, message_id, deadline).await {
                    Ok(Some(raw)) => Ok((f.to_string(), raw)),
                    Ok(None) => Err(None),
                    Err(e) => Err(Some(e)),
                }
            })
        });
        match futures_util::future::select_ok(waits).await {
            Ok((found, _)) => Ok(Some(found)),
            Err(None) => Ok(None),
            Err(Some(e)) => Err(e),
        }
    }

    /// The probe messages: one from the first mailbox of each domain to the
    /// first mailbox of the other, submitted and found in the recipient's
    /// INBOX (domain 1's first). Sent once per run; R5, R6, R7, R8, R10,
    /// R11 and R12 read them.
    pub async fn probes(&self) -> &[Result<Delivered, String>] {
        self.probes
            .get_or_init(|| async {
                let pairs = [(0, 1), (1, 0)];
                futures_util::future::join_all(pairs.map(|(a, b)| self.probe(a, b))).await
            })
            .await
    }

    async fn probe(&self, from: usize, to: usize) -> Result<Delivered, String> {
        let (from, to) = (self.mailbox(from), self.mailbox(to));
        let message_id = messages::message_id(&self.token, "probe", &from.address);
        let message = messages::plain(
            &from.address,
            &to.address,
            &format!("labctl verify probe {}", self.token),
            &message_id,
            "This message was sent by labctl verify to check delivery, DKIM and TLS.\r\n",
        );
        let sub = self
            .submit(from, &to.address, &message)
            .await
            .map_err(|e| format!("submission as {} failed: {e}", from.address))?;
        if !sub.accepted {
            return Err(format!(
                "submission as {} refused: {}",
                from.address,
                sub.reply.text()
            ));
        }
        let deadline = Instant::now() + DELIVERY_DEADLINE;
        match self.wait_for(to, "INBOX", &message_id, deadline).await {
            Ok(Some(raw)) => Ok(Delivered {
                from: from.address.clone(),
                to: to.address.clone(),
                message_id,
                submitted: sub.reply.text(),
                raw,
            }),
            Ok(None) => Err(format!(
                "{} -> {}: accepted ({}) but not in the INBOX of {} after {:?}",
                from.address,
                to.address,
                sub.reply.text(),
                to.address,
                DELIVERY_DEADLINE
            )),
            Err(e) => Err(format!("reading the INBOX of {} failed: {e}", to.address)),
        }
    }
}
