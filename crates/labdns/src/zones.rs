//! Loading a lab's zone files: every `*.zone` file of a folder, in the master
//! file format of RFC 1035 §5, parsed by hickory's own parser.
//!
//! Each file names its zone with `$ORIGIN` and must hold the zone's SOA
//! (RFC 1035 §5.2). Records outside the file's zone are refused (a server
//! would never answer them). TXT strings longer than 255 octets are split
//! into several strings (RFC 1035 §3.3.14), so a DKIM key written as one long
//! string is still served.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};

use crate::Error;

/// RFC 1035 §3.3: a <character-string> is a length octet followed by at most 255 octets.
const MAX_CHARACTER_STRING: usize = 255;

/// One parsed zone file.
#[derive(Debug)]
pub struct Zone {
    /// The file it came from.
    pub file: PathBuf,
    /// The zone's name (`$ORIGIN`).
    pub origin: Name,
    /// Its SOA serial.
    pub serial: u32,
    /// Every record, TXT strings already split.
    pub records: Vec<Record>,
}

/// The zones of a folder, ready to serve.
pub struct Zones {
    /// The catalog answering queries.
    pub catalog: Catalog,
    /// The zones, sorted by file name.
    pub zones: Vec<Zone>,
}

impl Zones {
    /// A one-line summary for the log: `metal.com. (14 records), ...`.
    pub fn summary(&self) -> String {
        self.zones
            .iter()
            .map(|z| format!("{} ({} records)", z.origin, z.records.len()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Loads every `*.zone` file of `dir`.
pub fn load_dir(dir: &Path) -> Result<Zones, Error> {
    let dir_error = |source| Error::ZoneDir {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_error)? {
        let path = entry.map_err(dir_error)?.path();
        if path.extension().is_some_and(|e| e == "zone") && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(Error::NoZones {
            dir: dir.to_path_buf(),
        });
    }
    files.sort();

    let mut catalog = Catalog::new();
    let mut zones: Vec<Zone> = Vec::with_capacity(files.len());
    for file in files {
        let zone = parse_file(&file)?;
        if let Some(other) = zones.iter().find(|z| z.origin == zone.origin) {
            return Err(Error::Zone {
                file,
                line: None,
                reason: format!(
                    "zone {} is also defined in {}",
                    zone.origin,
                    other.file.display()
                ),
            });
        }
        let handler = zone_handler(&zone)?;
        catalog.upsert(LowerName::new(&zone.origin), vec![handler]);
        zones.push(zone);
    }
    Ok(Zones { catalog, zones })
}

/// Parses one zone file with hickory's parser and checks it.
pub fn parse_file(file: &Path) -> Result<Zone, Error> {
    let zone_error = |line, reason| Error::Zone {
        file: file.to_path_buf(),
        line,
        reason,
    };
    let text =
        std::fs::read_to_string(file).map_err(|e| zone_error(None, format!("cannot read: {e}")))?;
    let (origin, sets) = match Parser::new(text.as_str(), Some(file.to_path_buf()), None).parse() {
        Ok(parsed) => parsed,
        Err(e) => {
            let reason = e.to_string();
            return Err(zone_error(failing_line(&text, file, &reason), reason));
        }
    };

    let mut serial = None;
    let mut records = Vec::new();
    for set in sets.values() {
        for record in set.records_without_rrsigs() {
            // RFC 1035 §5.2: every record of the file belongs to its zone.
            if !origin.zone_of(&record.name) {
                return Err(zone_error(
                    None,
                    format!(
                        "{} {} is outside the zone {origin}",
                        record.name,
                        record.record_type()
                    ),
                ));
            }
            if let RData::SOA(soa) = &record.data
                && record.name == origin
            {
                serial = Some(soa.serial);
            }
            records.push(split_long_txt(record.clone()));
        }
    }
    // RFC 1035 §5.2: exactly one SOA, at the top of the zone.
    let serial = serial.ok_or_else(|| zone_error(None, format!("no SOA record for {origin}")))?;
    Ok(Zone {
        file: file.to_path_buf(),
        origin,
        serial,
        records,
    })
}

/// The authoritative (primary) handler of one zone.
fn zone_handler(zone: &Zone) -> Result<Arc<dyn ZoneHandler>, Error> {
    let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        zone.origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    for record in &zone.records {
        if !handler.upsert_mut(record.clone(), zone.serial) {
            return Err(Error::Zone {
                file: zone.file.clone(),
                line: None,
                reason: format!(
                    "{} {} cannot be added to the zone (a CNAME beside other data?)",
                    record.name,
                    record.record_type()
                ),
            });
        }
    }
    Ok(Arc::new(handler))
}

/// RFC 1035 §3.3.14: TXT-DATA is one or more <character-string>s of at most
/// 255 octets each; a longer string is cut into consecutive pieces (which is
/// how DKIM keys are published, RFC 6376 §3.6.2.2).
fn split_long_txt(mut record: Record) -> Record {
    if record.record_type() != RecordType::TXT {
        return record;
    }
    if let RData::TXT(txt) = &record.data
        && txt.txt_data.iter().any(|s| s.len() > MAX_CHARACTER_STRING)
    {
        let pieces: Vec<&[u8]> = txt
            .txt_data
            .iter()
            .flat_map(|s| s.chunks(MAX_CHARACTER_STRING))
            .collect();
        record.data = RData::TXT(TXT::from_bytes(pieces));
    }
    record
}

/// The line of `text` at which hickory's parser reports `message`: the
/// shortest prefix of whole lines that fails with the same message. `None`
/// when the error is about the file as a whole (it fails even when empty).
fn failing_line(text: &str, file: &Path, message: &str) -> Option<usize> {
    let fails_with_message = |prefix: &str| {
        Parser::new(prefix, Some(file.to_path_buf()), None)
            .parse()
            .is_err_and(|e| e.to_string() == message)
    };
    if fails_with_message("") {
        return None;
    }
    let mut prefix = String::with_capacity(text.len() + 1);
    for (index, line) in text.lines().enumerate() {
        prefix.push_str(line);
        prefix.push('\n');
        if fails_with_message(&prefix) {
            return Some(index + 1);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "$ORIGIN lab.test.\n$TTL 300\n\
        @ IN SOA ns.lab.test. hostmaster.lab.test. ( 7 3600 600 86400 60 )\n\
        @ IN NS ns.lab.test.\n\
        ns IN A 10.0.0.53\n";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn parses_origin_serial_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let zone = parse_file(&write(dir.path(), "lab.test.zone", ZONE)).unwrap();
        assert_eq!(zone.origin.to_string(), "lab.test.");
        assert_eq!(zone.serial, 7);
        assert_eq!(zone.records.len(), 3);
    }

    #[test]
    fn a_bad_record_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{ZONE}mail IN A 10.0.0.999\nx IN A 10.0.0.1\n");
        let err = parse_file(&write(dir.path(), "lab.test.zone", &text)).unwrap_err();
        match &err {
            Error::Zone { line, .. } => assert_eq!(*line, Some(6), "{err}"),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("lab.test.zone, line 6"), "{err}");
    }

    #[test]
    fn an_unknown_type_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = ZONE.replace("ns IN A", "ns IN BOGUS");
        let err = parse_file(&write(dir.path(), "lab.test.zone", &text)).unwrap_err();
        assert!(matches!(err, Error::Zone { line: Some(5), .. }), "{err}");
    }

    #[test]
    fn missing_origin_and_missing_soa_are_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        let no_origin = ZONE.replace("$ORIGIN lab.test.\n", "");
        let err = parse_file(&write(dir.path(), "a.zone", &no_origin)).unwrap_err();
        assert!(matches!(err, Error::Zone { .. }), "{err}");
        let no_soa: String = ZONE
            .lines()
            .filter(|l| !l.contains("SOA"))
            .collect::<Vec<_>>()
            .join("\n");
        let err = parse_file(&write(dir.path(), "b.zone", &no_soa)).unwrap_err();
        assert!(err.to_string().contains("no SOA"), "{err}");
    }

    #[test]
    fn out_of_zone_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{ZONE}mail.other.test. IN A 10.0.0.1\n");
        let err = parse_file(&write(dir.path(), "lab.test.zone", &text)).unwrap_err();
        assert!(err.to_string().contains("outside the zone"), "{err}");
    }

    #[test]
    fn long_txt_strings_are_split_at_255_octets() {
        let dir = tempfile::tempdir().unwrap();
        let long = "k".repeat(600);
        let text = format!("{ZONE}sel._domainkey IN TXT \"{long}\"\n");
        let zone = parse_file(&write(dir.path(), "lab.test.zone", &text)).unwrap();
        let txt = zone
            .records
            .iter()
            .find_map(|r| match &r.data {
                RData::TXT(t) => Some(t),
                _ => None,
            })
            .unwrap();
        let lens: Vec<usize> = txt.txt_data.iter().map(|s| s.len()).collect();
        assert_eq!(lens, [255, 255, 90]);
        let joined: Vec<u8> = txt
            .txt_data
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect();
        assert_eq!(joined, long.as_bytes());
    }

    #[test]
    fn quoted_strings_on_one_line_are_separate_txt_strings() {
        // The form `labctl render` writes for DKIM keys (templates/domain.zone.j2).
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{ZONE}lab._domainkey IN TXT \"v=DKIM1; k=rsa; p=AB\" \"CD\"\n");
        let zone = parse_file(&write(dir.path(), "lab.test.zone", &text)).unwrap();
        let strings: Vec<&[u8]> = zone
            .records
            .iter()
            .find_map(|r| match &r.data {
                RData::TXT(t) => Some(t.txt_data.iter().map(|s| &s[..]).collect()),
                _ => None,
            })
            .unwrap();
        assert_eq!(strings, [&b"v=DKIM1; k=rsa; p=AB"[..], b"CD"]);
    }

    #[test]
    fn a_folder_without_zones_and_duplicate_zones_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load_dir(dir.path()), Err(Error::NoZones { .. })));
        write(dir.path(), "a.zone", ZONE);
        assert_eq!(load_dir(dir.path()).unwrap().zones.len(), 1);
        write(dir.path(), "b.zone", ZONE);
        let err = load_dir(dir.path()).err().unwrap();
        assert!(err.to_string().contains("also defined in"), "{err}");
    }
}
