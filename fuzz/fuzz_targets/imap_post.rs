//! Fuzz target `imap_post`: see mailserver::fuzzing::Target::ImapPost.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailserver::fuzzing::Target;

fuzz_target!(
    init: {
        maillab_fuzz::mail();
    },
    |data: &[u8]| maillab_fuzz::run_mail(Target::ImapPost, data)
);
