//! Any bytes on the command topic: the DSAR command verifier must answer with an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut keys = gatehouse::sync::keys::TrustedKeys::default();
    if let Ok(k) = gatehouse::sync::keys::generate() {
        keys.add("cloud-1", k.verifying_key());
    }
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    let _ = gatehouse::sync::command::verify(data, &keys, "site/dev", now);
});
