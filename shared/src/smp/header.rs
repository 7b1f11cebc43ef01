//! The SMP message header: 8 bytes, big endian (PS: the specification
//! allows either byte order, but every MCUmgr implementation uses network
//! order, and so do we).
//!
//! ```text
//! byte 0: reserved (3 bits) | version (2 bits) | op (3 bits)
//! byte 1: flags
//! bytes 2-3: data length (of the CBOR body that follows)
//! bytes 4-5: group id
//! byte 6: sequence number
//! byte 7: command id
//! ```

use thiserror::Error;

/// Length of the header in bytes.
pub const HEADER_LEN: usize = 8;

/// The operation of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read = 0,
    ReadResponse = 1,
    Write = 2,
    WriteResponse = 3,
}

impl Op {
    /// The response op answering this request op.
    pub fn response(self) -> Op {
        match self {
            Op::Read | Op::ReadResponse => Op::ReadResponse,
            Op::Write | Op::WriteResponse => Op::WriteResponse,
        }
    }
}

/// A decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 0 for SMP version 1, 1 for version 2 (its error format).
    pub version: u8,
    pub op: Op,
    pub flags: u8,
    /// Length of the body after the header.
    pub length: u16,
    pub group: u16,
    pub sequence: u8,
    pub command: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeaderError {
    #[error("an SMP message needs 8 header bytes, got {0}")]
    Short(usize),
    #[error("SMP op {0} is not read, write or a response")]
    UnknownOp(u8),
    #[error("SMP version {0} is not 1 or 2")]
    UnknownVersion(u8),
    #[error("SMP header declares a {declared}-byte body, the message holds {actual}")]
    LengthMismatch { declared: u16, actual: usize },
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let [len_hi, len_lo] = self.length.to_be_bytes();
        let [group_hi, group_lo] = self.group.to_be_bytes();
        [
            ((self.version & 0b11) << 3) | (self.op as u8),
            self.flags,
            len_hi,
            len_lo,
            group_hi,
            group_lo,
            self.sequence,
            self.command,
        ]
    }

    /// Decodes the header at the start of `message`.
    pub fn decode(message: &[u8]) -> Result<Header, HeaderError> {
        let bytes: [u8; HEADER_LEN] = message
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(HeaderError::Short(message.len()))?;
        let op = match bytes[0] & 0b111 {
            0 => Op::Read,
            1 => Op::ReadResponse,
            2 => Op::Write,
            3 => Op::WriteResponse,
            other => return Err(HeaderError::UnknownOp(other)),
        };
        let version = (bytes[0] >> 3) & 0b11;
        if version > 1 {
            return Err(HeaderError::UnknownVersion(version + 1));
        }
        Ok(Header {
            version,
            op,
            flags: bytes[1],
            length: u16::from_be_bytes([bytes[2], bytes[3]]),
            group: u16::from_be_bytes([bytes[4], bytes[5]]),
            sequence: bytes[6],
            command: bytes[7],
        })
    }

    /// Splits a whole message into its header and body, checking that the
    /// declared body length is what follows.
    pub fn split(message: &[u8]) -> Result<(Header, &[u8]), HeaderError> {
        let header = Header::decode(message)?;
        let body = message.get(HEADER_LEN..).unwrap_or_default();
        if body.len() != usize::from(header.length) {
            return Err(HeaderError::LengthMismatch {
                declared: header.length,
                actual: body.len(),
            });
        }
        Ok((header, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_upload_header_decodes() {
        // From the `smp` 4.2.0 package's documentation (smp/packet.py):
        // an image upload write, SMP v2, 116-byte body, group 1, seq 154.
        let bytes = [0x0A, 0x00, 0x00, 0x74, 0x00, 0x01, 0x9A, 0x01];
        let header = Header::decode(&bytes).unwrap();
        assert_eq!(
            header,
            Header {
                version: 1,
                op: Op::Write,
                flags: 0,
                length: 116,
                group: 1,
                sequence: 154,
                command: 1,
            }
        );
        assert_eq!(header.encode(), bytes);
    }

    #[test]
    fn bad_headers_are_refused() {
        assert_eq!(Header::decode(&[0; 7]), Err(HeaderError::Short(7)));
        assert_eq!(
            Header::decode(&[0x04, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::UnknownOp(4))
        );
        assert_eq!(
            Header::decode(&[0x10, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::UnknownVersion(3))
        );
        assert_eq!(
            Header::split(&[0x00, 0, 0, 2, 0, 0, 0, 0, 0xA0]),
            Err(HeaderError::LengthMismatch {
                declared: 2,
                actual: 1
            })
        );
    }
}
