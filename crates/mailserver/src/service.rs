//! The seven services of a mail server and their ports: one type shared by
//! the server's config, `labctl`'s plan, the lab description (`lab.json`)
//! and the runtimes (docs/architecture.md).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A listening service of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Port 25: MX, STARTTLS, never AUTH (RFC 5321, RFC 3207).
    Smtp,
    /// Port 587: submission, STARTTLS then AUTH (RFC 6409).
    Submission,
    /// Port 465: submission over implicit TLS (RFC 8314 §3.3).
    Submissions,
    /// Port 143: IMAP, STARTTLS (RFC 3501 §6.2.1).
    Imap,
    /// Port 993: IMAP over implicit TLS (RFC 8314 §3.2).
    Imaps,
    /// Port 110: POP3, STLS (RFC 1939, RFC 2595 §4).
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

    /// The service's name (as in the config, `lab.json` and `status`).
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

    /// The protocol (transcript file name).
    pub fn protocol(self) -> &'static str {
        match self {
            Self::Smtp | Self::Submission | Self::Submissions => "smtp",
            Self::Imap | Self::Imaps => "imap",
            Self::Pop3 | Self::Pop3s => "pop3",
        }
    }

    /// True for the implicit-TLS ports (RFC 8314 §3).
    pub fn implicit_tls(self) -> bool {
        matches!(self, Self::Submissions | Self::Imaps | Self::Pop3s)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The port of each service; 0 disables a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// SMTP MX, STARTTLS.
    pub smtp: u16,
    /// Submission, STARTTLS.
    pub submission: u16,
    /// Submission, implicit TLS.
    pub submissions: u16,
    /// IMAP, STARTTLS.
    pub imap: u16,
    /// IMAP, implicit TLS.
    pub imaps: u16,
    /// POP3, STLS.
    pub pop3: u16,
    /// POP3, implicit TLS.
    pub pop3s: u16,
}

impl Ports {
    /// The well-known ports (RFC 5321, 6409, 8314, 3501, 1939).
    pub const STANDARD: Ports = Ports {
        smtp: 25,
        submission: 587,
        submissions: 465,
        imap: 143,
        imaps: 993,
        pop3: 110,
        pop3s: 995,
    };

    /// Every listener off (tests that drive sessions without sockets).
    pub const NONE: Ports = Ports {
        smtp: 0,
        submission: 0,
        submissions: 0,
        imap: 0,
        imaps: 0,
        pop3: 0,
        pop3s: 0,
    };

    /// Every port moved up by `by` (the local runtime's ports above 1024).
    pub const fn offset(self, by: u16) -> Ports {
        Ports {
            smtp: self.smtp + by,
            submission: self.submission + by,
            submissions: self.submissions + by,
            imap: self.imap + by,
            imaps: self.imaps + by,
            pop3: self.pop3 + by,
            pop3s: self.pop3s + by,
        }
    }

    /// The port of `service`.
    pub fn get(&self, service: Service) -> u16 {
        match service {
            Service::Smtp => self.smtp,
            Service::Submission => self.submission,
            Service::Submissions => self.submissions,
            Service::Imap => self.imap,
            Service::Imaps => self.imaps,
            Service::Pop3 => self.pop3,
            Service::Pop3s => self.pop3s,
        }
    }

    /// These ports with `service` on `port`.
    pub fn with(mut self, service: Service, port: u16) -> Ports {
        *match service {
            Service::Smtp => &mut self.smtp,
            Service::Submission => &mut self.submission,
            Service::Submissions => &mut self.submissions,
            Service::Imap => &mut self.imap,
            Service::Imaps => &mut self.imaps,
            Service::Pop3 => &mut self.pop3,
            Service::Pop3s => &mut self.pop3s,
        } = port;
        self
    }

    /// Every service with its port, in [`Service::ALL`] order, disabled ones
    /// (port 0) left out.
    pub fn enabled(&self) -> impl Iterator<Item = (Service, u16)> + '_ {
        Service::ALL
            .into_iter()
            .map(|s| (s, self.get(s)))
            .filter(|&(_, port)| port != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for s in Service::ALL {
            let yaml = serde_yaml::to_string(&s).unwrap();
            assert_eq!(yaml.trim(), s.name());
            assert_eq!(serde_yaml::from_str::<Service>(&yaml).unwrap(), s);
        }
    }

    #[test]
    fn local_offset_and_lookup() {
        let local = Ports::STANDARD.offset(10000);
        assert_eq!(local.get(Service::Imaps), 10993);
        assert_eq!(local.enabled().count(), 7);
        for s in Service::ALL {
            assert_eq!(Ports::NONE.with(s, 7).get(s), 7);
            assert_eq!(Ports::NONE.with(s, 7).enabled().count(), 1);
        }
        let only_smtp = Ports {
            smtp: 25,
            ..Ports::NONE
        };
        assert_eq!(
            only_smtp.enabled().collect::<Vec<_>>(),
            [(Service::Smtp, 25)]
        );
    }

    #[test]
    fn unknown_port_names_are_refused() {
        let e = serde_yaml::from_str::<Ports>(
            "{smtp: 25, submission: 587, submissions: 465, imap: 143, imaps: 993, pop3: 110, pop3s: 995, pop4: 1}",
        )
        .unwrap_err();
        assert!(e.to_string().contains("pop4"), "{e}");
    }
}
