//! Any byte sequence fed to the SMP serial frame decoder: it must never
//! panic, and every message it yields must parse as a request or be refused
//! with a typed error (also never a panic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tumorxai_shared::smp::body::parse_request;
use tumorxai_shared::smp::{FrameDecoder, Header};

fuzz_target!(|data: &[u8]| {
    // The device's packet capacity: an 8192-byte SMP message + 4 bytes
    // of length and CRC.
    let mut decoder = FrameDecoder::<8196>::new();
    for &byte in data {
        if let Some(Ok(message)) = decoder.feed(byte) {
            if let Ok((header, body)) = Header::split(&message) {
                let _ = parse_request(&header, body);
            }
        }
    }
});
