//! Fuzz target `pop3`: see mailserver::fuzzing::Target::Pop3.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailserver::fuzzing::Target;

fuzz_target!(
    init: {
        maillab_fuzz::mail();
    },
    |data: &[u8]| maillab_fuzz::run_mail(Target::Pop3, data)
);
