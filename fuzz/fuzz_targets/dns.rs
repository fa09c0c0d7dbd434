//! Fuzz target `dns`: see labdns::fuzzing::Harness::run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        maillab_fuzz::dns();
    },
    |data: &[u8]| {
        if let Err(slow) = maillab_fuzz::dns().run(data) {
            panic!("slow input (dns): {slow}");
        }
    }
);
