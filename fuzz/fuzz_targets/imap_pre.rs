//! Fuzz target `imap_pre`: see mailserver::fuzzing::Target::ImapPre.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailserver::fuzzing::Target;

fuzz_target!(
    init: {
        maillab_fuzz::mail();
    },
    |data: &[u8]| maillab_fuzz::run_mail(Target::ImapPre, data)
);
