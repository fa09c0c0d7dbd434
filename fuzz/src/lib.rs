//! What every fuzz target shares: the harnesses, built once per process
//! (`mailserver::fuzzing`, `labdns::fuzzing`), and the rule that a slow
//! input is a crash (libFuzzer saves it like one).

use std::sync::OnceLock;

/// The mail server harness of this process (certificate made by rcgen).
pub fn mail() -> &'static mailserver::fuzzing::Harness {
    static H: OnceLock<mailserver::fuzzing::Harness> = OnceLock::new();
    H.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["mail.example.test".to_string()])
            .expect("test certificate");
        mailserver::fuzzing::Harness::new(&cert.cert.pem(), &cert.signing_key.serialize_pem())
            .expect("fuzz harness")
    })
}

/// The DNS harness of this process.
pub fn dns() -> &'static labdns::fuzzing::Harness {
    static H: OnceLock<labdns::fuzzing::Harness> = OnceLock::new();
    H.get_or_init(|| labdns::fuzzing::Harness::new().expect("DNS fuzz harness"))
}

/// Runs mail target `target` on `data`; a slow input panics (a finding).
pub fn run_mail(target: mailserver::fuzzing::Target, data: &[u8]) {
    if let Err(slow) = mail().run(target, data) {
        panic!("slow input ({}): {slow}", target.name());
    }
}
