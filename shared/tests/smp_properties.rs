//! Property tests of the SMP serial codec: every message survives encoding
//! and decoding, also between console output and split into arbitrary
//! read sizes; bytes lost or flipped never yield a wrong message (CRC) and
//! no byte sequence makes the decoder panic.

use proptest::prelude::*;
use tumorxai_shared::smp::{frames, FrameDecoder, MAX_LINE};

/// The device's packet capacity (8192-byte messages, + length and CRC).
const CAPACITY: usize = 8196;

fn encode(message: &[u8]) -> Vec<u8> {
    frames(message).unwrap().flat_map(|l| l.to_vec()).collect()
}

fn decode(bytes: &[u8]) -> Vec<Result<Vec<u8>, String>> {
    let mut decoder = FrameDecoder::<CAPACITY>::new();
    bytes
        .iter()
        .filter_map(|&b| decoder.feed(b))
        .map(|r| r.map(|m| m.to_vec()).map_err(|e| e.to_string()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn messages_round_trip(messages in prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..CAPACITY - 4), 1..4)) {
        let mut bytes = Vec::new();
        for m in &messages {
            bytes.extend(b"console text between packets\n");
            bytes.extend(encode(m));
        }
        for line in bytes.split(|&b| b == b'\n') {
            prop_assert!(line.len() < MAX_LINE);
        }
        let decoded = decode(&bytes);
        let expected: Vec<Result<Vec<u8>, String>> = messages.into_iter().map(Ok).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2 * CAPACITY)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn framed_garbage_never_panics(lines in prop::collection::vec(
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..200)), 0..40)) {
        let mut bytes = Vec::new();
        for (start, body) in lines {
            bytes.extend(if start { [0x06, 0x09] } else { [0x04, 0x14] });
            bytes.extend(body.into_iter().filter(|&b| b != b'\n'));
            bytes.push(b'\n');
        }
        let _ = decode(&bytes);
    }

    #[test]
    fn a_damaged_packet_never_yields_a_wrong_message(
        message in prop::collection::vec(any::<u8>(), 1..600),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut bytes = encode(&message);
        let at = position.index(bytes.len());
        bytes[at] ^= flip;
        // A damaged packet is refused or lost, never another message.
        for decoded in decode(&bytes).into_iter().flatten() {
            prop_assert_eq!(&decoded, &message);
        }
    }
}
