//! Any sequence of messages on the chunk topic: the assembler must answer with an error or an envelope
//! (which then goes through the verifier), never panic, and never hold more than its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut a = gatehouse::sync::chunk::Assembler::new(1 << 16);
    // Split the input into messages at 0xFF bytes, as if several chunks arrived in a row.
    for msg in data.split(|&b| b == 0xFF) {
        let _ = a.push(msg);
    }
});
