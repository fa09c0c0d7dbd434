//! The query log: one JSON line per answered query, for `labctl trace`.
//!
//! `{"time":"2026-11-22T03:20:00.123Z","client":"10.77.7.11:40312","proto":"udp",
//!   "name":"metal.com.","type":"MX","rcode":"NOERROR"}`

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use crate::Error;

/// Where the lines go.
pub enum QueryLog {
    /// Nowhere (the tracing log still has a debug line).
    Off,
    /// The process's stdout (`/dev/stdout`, what `docker logs` shows).
    Stdout,
    /// A file, appended to.
    File(Mutex<File>),
}

/// One line of the log.
#[derive(Debug, Serialize)]
pub struct Entry<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    /// The client's address and port.
    pub client: SocketAddr,
    /// `udp` or `tcp`.
    pub proto: &'a str,
    /// The queried name, fully qualified.
    pub name: &'a str,
    /// The queried type (`MX`, `TXT`...).
    #[serde(rename = "type")]
    pub record_type: &'a str,
    /// The answer's RCODE mnemonic (`NOERROR`, `NXDOMAIN`...).
    pub rcode: &'a str,
}

impl QueryLog {
    /// Opens the log: `None` is off, `/dev/stdout` is stdout, anything else a file appended to.
    pub fn open(path: Option<&Path>) -> Result<Self, Error> {
        match path {
            None => Ok(Self::Off),
            Some(p) if p == Path::new("/dev/stdout") || p == Path::new("-") => Ok(Self::Stdout),
            Some(p) => OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(|f| Self::File(Mutex::new(f)))
                .map_err(|source| Error::QueryLog {
                    path: p.to_path_buf(),
                    source,
                }),
        }
    }

    /// Writes one entry as one line (one `write` call, so lines never interleave).
    pub fn write(&self, entry: &Entry<'_>) {
        tracing::debug!(client = %entry.client, name = entry.name, r#type = entry.record_type, rcode = entry.rcode, "query");
        let mut line = match serde_json::to_vec(entry) {
            Ok(line) => line,
            Err(_) => return,
        };
        line.push(b'\n');
        let result = match self {
            Self::Off => Ok(()),
            Self::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&line).and_then(|()| out.flush())
            }
            Self::File(file) => match file.lock() {
                Ok(mut f) => f.write_all(&line),
                Err(_) => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::warn!("cannot write the query log: {e}");
        }
    }
}

/// RFC 3339 timestamp of now, UTC, milliseconds.
pub fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format).unwrap_or_default()
}

/// The mnemonic of an RCODE as dig prints it (RFC 1035 §4.1.1, RFC 6895 §2.3).
pub fn rcode_mnemonic(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADVERS".into(),
        other => format!("RCODE{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_log_gets_one_json_line_per_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.log");
        let log = QueryLog::open(Some(&path)).unwrap();
        for name in ["a.lab.test.", "b.lab.test."] {
            log.write(&Entry {
                time: now(),
                client: "127.0.0.1:5353".parse().unwrap(),
                proto: "udp",
                name,
                record_type: "MX",
                rcode: "NXDOMAIN",
            });
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["name"], "b.lab.test.");
        assert_eq!(lines[1]["type"], "MX");
        assert_eq!(lines[1]["rcode"], "NXDOMAIN");
        assert_eq!(lines[1]["client"], "127.0.0.1:5353");
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn an_unwritable_log_is_an_error_naming_it() {
        let err = QueryLog::open(Some(Path::new("/nonexistent/dir/q.log")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/dir/q.log"), "{err}");
    }
}
