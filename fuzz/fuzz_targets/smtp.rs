//! Fuzz target `smtp`: see mailserver::fuzzing::Target::Smtp.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailserver::fuzzing::Target;

fuzz_target!(
    init: {
        maillab_fuzz::mail();
    },
    |data: &[u8]| maillab_fuzz::run_mail(Target::Smtp, data)
);
