//! The SMP serial (console) transport: each SMP message travels as a packet
//! `length (u16 BE) | message | CRC-16/XMODEM of message (u16 BE)`, base64
//! encoded and cut into lines of at most [`MAX_LINE`] bytes. The first line
//! starts with `06 09`, each continuation with `04 14`, every line ends in
//! `\n`; `length` counts the message and the CRC. Lines that start with
//! neither marker are console output and are skipped.
//!
//! [`frames`] encodes (lines of 124 base64 characters, as Zephyr's MCUmgr
//! sends them); [`FrameDecoder`] is fed one byte at a time and never panics:
//! any byte sequence ends in messages, typed errors, or nothing.

use base64::Engine;
use crc::{Crc, CRC_16_XMODEM};
use thiserror::Error;

/// The longest line a sender may emit, marker and newline included (the
/// limit of the console transport).
pub const MAX_LINE: usize = 127;
/// Lines accepted up to this length: some clients cut longer lines than
/// the limit, and accepting them costs nothing.
pub const MAX_ACCEPTED_LINE: usize = 512;
const START: [u8; 2] = [0x06, 0x09];
const CONTINUATION: [u8; 2] = [0x04, 0x14];
const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_XMODEM);
const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// CRC-16/XMODEM (polynomial 0x1021, initial value 0), as MCUmgr uses.
pub fn crc16(bytes: &[u8]) -> u16 {
    CRC16.checksum(bytes)
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("a serial line longer than {MAX_ACCEPTED_LINE} bytes")]
    LineTooLong,
    #[error("a continuation line without a packet start")]
    UnexpectedContinuation,
    #[error("invalid base64 in a serial frame")]
    Base64,
    #[error("a packet of {declared} bytes exceeds the {capacity}-byte buffer")]
    TooLong { declared: usize, capacity: usize },
    #[error("a packet declares {declared} bytes but carries {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("CRC mismatch: packet says {sent:#06x}, message gives {computed:#06x}")]
    Crc { sent: u16, computed: u16 },
}

/// The lines of one packet, each with its marker and newline.
pub struct Frames<'a> {
    message: &'a [u8],
    /// Position in the raw packet (length, message, CRC).
    at: usize,
    raw_per_line: usize,
    crc: [u8; 2],
    length: [u8; 2],
}

/// Encodes `message` into serial lines of at most [`MAX_LINE`] bytes.
/// Refused when the packet length does not fit its 16-bit field.
pub fn frames(message: &[u8]) -> Result<Frames<'_>, FrameError> {
    frames_with_line(message, MAX_LINE)
}

/// As [`frames`], with a shorter line limit (at least 7 bytes: marker, one
/// base64 quad, newline).
pub fn frames_with_line(message: &[u8], max_line: usize) -> Result<Frames<'_>, FrameError> {
    let length = message
        .len()
        .checked_add(2)
        .and_then(|l| u16::try_from(l).ok())
        .ok_or(FrameError::TooLong {
            declared: message.len().saturating_add(2),
            capacity: usize::from(u16::MAX),
        })?;
    let quads = max_line.clamp(7, MAX_ACCEPTED_LINE).saturating_sub(3) / 4;
    Ok(Frames {
        message,
        at: 0,
        raw_per_line: quads * 3,
        crc: crc16(message).to_be_bytes(),
        length: length.to_be_bytes(),
    })
}

impl Frames<'_> {
    fn total(&self) -> usize {
        self.message.len() + 4
    }

    fn raw(&self, i: usize) -> u8 {
        let n = self.message.len();
        match i {
            0 | 1 => self.length[i],
            _ if i < n + 2 => self.message.get(i - 2).copied().unwrap_or_default(),
            _ => self.crc.get(i - n - 2).copied().unwrap_or_default(),
        }
    }
}

impl Iterator for Frames<'_> {
    type Item = heapless::Vec<u8, MAX_ACCEPTED_LINE>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.total() {
            return None;
        }
        let end = (self.at + self.raw_per_line).min(self.total());
        let mut raw = [0u8; MAX_ACCEPTED_LINE];
        let count = end - self.at;
        for (k, slot) in raw.iter_mut().take(count).enumerate() {
            *slot = self.raw(self.at + k);
        }
        let mut line = heapless::Vec::new();
        let marker = if self.at == 0 { START } else { CONTINUATION };
        let mut text = [0u8; MAX_ACCEPTED_LINE];
        let written = BASE64.encode_slice(raw.get(..count)?, &mut text).ok()?;
        line.extend_from_slice(&marker).ok()?;
        line.extend_from_slice(text.get(..written)?).ok()?;
        line.push(b'\n').ok()?;
        self.at = end;
        Some(line)
    }
}

/// Reassembles messages from serial bytes. `N` bounds the packet (length
/// field, message and CRC), so the longest message is `N − 4` bytes.
pub struct FrameDecoder<const N: usize> {
    line: heapless::Vec<u8, MAX_ACCEPTED_LINE>,
    line_too_long: bool,
    packet: heapless::Vec<u8, N>,
    /// Base64 characters carried over to the next line (fewer than 4).
    carry: heapless::Vec<u8, 4>,
    in_packet: bool,
    /// A padded quad was seen: the packet's base64 has ended.
    padded: bool,
    /// The packet in progress failed: its remaining lines are dropped
    /// silently until the next start.
    discarding: bool,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    pub const fn new() -> Self {
        FrameDecoder {
            line: heapless::Vec::new(),
            line_too_long: false,
            packet: heapless::Vec::new(),
            carry: heapless::Vec::new(),
            in_packet: false,
            padded: false,
            discarding: false,
        }
    }

    fn reset_packet(&mut self) {
        self.packet.clear();
        self.carry.clear();
        self.in_packet = false;
        self.padded = false;
    }

    /// Feeds one byte; a completed message (without length and CRC) or an
    /// error for the packet in progress (which is then dropped).
    pub fn feed(&mut self, byte: u8) -> Option<Result<heapless::Vec<u8, N>, FrameError>> {
        if byte != b'\n' {
            if self.line.push(byte).is_err() {
                self.line_too_long = true;
            }
            return None;
        }
        let too_long = core::mem::take(&mut self.line_too_long);
        let line = core::mem::take(&mut self.line);
        let content = line.strip_suffix(b"\r").unwrap_or(&line);
        let is_start = content.starts_with(&START);
        let is_continuation = content.starts_with(&CONTINUATION);
        if too_long {
            if is_start || is_continuation || self.in_packet {
                self.reset_packet();
                self.discarding = true;
                return Some(Err(FrameError::LineTooLong));
            }
            return None;
        }
        if is_start {
            self.reset_packet();
            self.in_packet = true;
            self.discarding = false;
        } else if is_continuation {
            if !self.in_packet {
                if self.discarding {
                    return None;
                }
                return Some(Err(FrameError::UnexpectedContinuation));
            }
        } else {
            return None; // console output between packets
        }
        let result = self
            .take_base64(content.get(2..).unwrap_or_default())
            .and_then(|()| self.complete());
        match result {
            Ok(None) => None,
            Ok(Some(message)) => {
                self.reset_packet();
                Some(Ok(message))
            }
            Err(e) => {
                self.reset_packet();
                self.discarding = true;
                Some(Err(e))
            }
        }
    }

    /// Decodes the whole quads of `carry + text`, keeping the rest.
    fn take_base64(&mut self, text: &[u8]) -> Result<(), FrameError> {
        let mut chars = [0u8; MAX_ACCEPTED_LINE + 4];
        let carried = self.carry.len();
        let total = carried + text.len();
        chars
            .get_mut(..carried)
            .ok_or(FrameError::Base64)?
            .copy_from_slice(&self.carry);
        chars
            .get_mut(carried..total)
            .ok_or(FrameError::Base64)?
            .copy_from_slice(text);
        let whole = total / 4 * 4;
        if whole > 0 {
            if self.padded {
                return Err(FrameError::Base64);
            }
            let quads = chars.get(..whole).ok_or(FrameError::Base64)?;
            let mut raw = [0u8; (MAX_ACCEPTED_LINE + 4) / 4 * 3];
            let n = BASE64
                .decode_slice(quads, &mut raw)
                .map_err(|_| FrameError::Base64)?;
            self.padded = quads.ends_with(b"=");
            let decoded = raw.get(..n).ok_or(FrameError::Base64)?;
            self.packet
                .extend_from_slice(decoded)
                .map_err(|_| FrameError::TooLong {
                    declared: self.packet.len() + decoded.len(),
                    capacity: N,
                })?;
        }
        self.carry.clear();
        self.carry
            .extend_from_slice(chars.get(whole..total).unwrap_or_default())
            .map_err(|_| FrameError::Base64)?;
        Ok(())
    }

    /// The message, once the packet holds as many bytes as it declares.
    fn complete(&self) -> Result<Option<heapless::Vec<u8, N>>, FrameError> {
        let Some(&[hi, lo]) = self
            .packet
            .get(..2)
            .and_then(|s| <&[u8; 2]>::try_from(s).ok())
        else {
            return Ok(None);
        };
        let declared = usize::from(u16::from_be_bytes([hi, lo]));
        let total = declared + 2;
        if total > N {
            return Err(FrameError::TooLong {
                declared: total,
                capacity: N,
            });
        }
        if declared < 2 {
            return Err(FrameError::LengthMismatch {
                declared,
                actual: self.packet.len() - 2,
            });
        }
        match self.packet.len().cmp(&total) {
            core::cmp::Ordering::Less => Ok(None),
            core::cmp::Ordering::Greater => Err(FrameError::LengthMismatch {
                declared,
                actual: self.packet.len() - 2,
            }),
            core::cmp::Ordering::Equal => {
                let message = self.packet.get(2..total - 2).unwrap_or_default();
                let sent = self
                    .packet
                    .get(total - 2..total)
                    .and_then(|c| <[u8; 2]>::try_from(c).ok())
                    .map(u16::from_be_bytes)
                    .unwrap_or_default();
                let computed = crc16(message);
                if sent != computed {
                    return Err(FrameError::Crc { sent, computed });
                }
                let mut out = heapless::Vec::new();
                out.extend_from_slice(message)
                    .map_err(|_| FrameError::TooLong {
                        declared: total,
                        capacity: N,
                    })?;
                Ok(Some(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smp::fixtures::documented_upload;

    fn lines(message: &[u8], max_line: usize) -> Vec<Vec<u8>> {
        frames_with_line(message, max_line)
            .unwrap()
            .map(|l| l.to_vec())
            .collect()
    }

    fn decode_all<const N: usize>(bytes: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut decoder = FrameDecoder::<N>::new();
        bytes
            .iter()
            .filter_map(|&b| decoder.feed(b))
            .map(|r| r.map(|m| m.to_vec()))
            .collect()
    }

    #[test]
    fn crc16_is_xmodem() {
        // The CRC catalogue's check value of CRC-16/XMODEM.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn the_documented_single_line_encoding() {
        // smp 4.2.0, smp/packet.py, `encode(b"Hello, world!")`.
        assert_eq!(
            lines(b"Hello, world!", MAX_LINE),
            vec![b"\x06\tAA9IZWxsbywgd29ybGQhet4=\n".to_vec()]
        );
    }

    #[test]
    fn the_documented_fragmented_encoding() {
        // The same, `encode(b"Hello, world!", line_length=8)`.
        let expected: Vec<Vec<u8>> = [
            &b"\x06\tAA9I\n"[..],
            b"\x04\x14ZWxs\n",
            b"\x04\x14bywg\n",
            b"\x04\x14d29y\n",
            b"\x04\x14bGQh\n",
            b"\x04\x14et4=\n",
        ]
        .iter()
        .map(|l| l.to_vec())
        .collect();
        assert_eq!(lines(b"Hello, world!", 8), expected);
    }

    #[test]
    fn the_documented_upload_frames_decode() {
        let hex = [
            "06094148344b41414230414147610a",
            "041441615a6a6247567544574e760a",
            "04145a6d59594b6d4e7a6147464d0a",
            "041464484a3163335167625755670a",
            "0414596e4a765a475268644746590a",
            "04145141414241674d45425159480a",
            "041443416b4b4377774e446738510a",
            "041445524954464255574678675a0a",
            "04144768736348523466494345690a",
            "04144979516c4a69636f4b536f720a",
            "04144c4330754c7a41784d6a4d300a",
            "04144e5459334f446b364f7a77390a",
            "0414506a396c615731685a3255410a",
            "04145a3356775a334a685a4758300a",
            "04147134673d0a",
        ];
        let bytes: Vec<u8> = hex.iter().flat_map(|h| hex::decode(h).unwrap()).collect();
        let decoded = decode_all::<512>(&bytes);
        assert_eq!(decoded, vec![Ok(documented_upload())]);
        let message = documented_upload();
        let (header, body) = crate::smp::Header::split(&message).unwrap();
        assert_eq!((header.group, header.command, header.sequence), (1, 1, 154));
        assert_eq!(body.len(), 116);
    }

    #[test]
    fn console_lines_and_carriage_returns_are_tolerated() {
        let mut bytes = b"boot: tumorxai-device\n".to_vec();
        for line in lines(b"Hello, world!", 8) {
            bytes.extend_from_slice(&line[..line.len() - 1]);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"log line\n");
        assert_eq!(
            decode_all::<64>(&bytes),
            vec![Ok(b"Hello, world!".to_vec())]
        );
    }

    #[test]
    fn damaged_packets_give_typed_errors() {
        let good = lines(b"Hello, world!", MAX_LINE).concat();
        // One character of the message changed: "Z" → "Y" decodes to other bytes.
        let mut bad = good.clone();
        let at = bad.iter().position(|&b| b == b'Z').unwrap();
        bad[at] = b'Y';
        assert!(matches!(
            decode_all::<64>(&bad)[..],
            [Err(FrameError::Crc { .. })]
        ));
        assert_eq!(
            decode_all::<64>(b"\x04\x14ZWxs\n"),
            vec![Err(FrameError::UnexpectedContinuation)]
        );
        assert_eq!(
            decode_all::<64>(b"\x06\tA*9I\n"),
            vec![Err(FrameError::Base64)]
        );
        // 13-byte message in a 16-byte buffer: length field 15 + 2 > 16.
        assert_eq!(
            decode_all::<16>(&good),
            vec![Err(FrameError::TooLong {
                declared: 17,
                capacity: 16
            })]
        );
        let mut long = b"\x06\t".to_vec();
        long.extend(std::iter::repeat_n(b'A', MAX_ACCEPTED_LINE));
        long.push(b'\n');
        long.extend_from_slice(&good);
        assert_eq!(
            decode_all::<64>(&long),
            vec![Err(FrameError::LineTooLong), Ok(b"Hello, world!".to_vec())]
        );
    }

    #[test]
    fn a_new_start_abandons_a_packet_in_progress() {
        let first = lines(&[7u8; 200], MAX_LINE);
        let mut bytes = first[0].clone(); // first line only
        bytes.extend(lines(b"Hello, world!", MAX_LINE).concat());
        assert_eq!(
            decode_all::<512>(&bytes),
            vec![Ok(b"Hello, world!".to_vec())]
        );
    }

    #[test]
    fn lines_stay_within_the_transport_limit() {
        let message: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let all = lines(&message, MAX_LINE);
        assert!(all.iter().all(|l| l.len() <= MAX_LINE));
        assert_eq!(all[0].len(), MAX_LINE, "full lines use the whole limit");
        assert_eq!(decode_all::<2048>(&all.concat()), vec![Ok(message)]);
    }
}
