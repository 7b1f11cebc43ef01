//! MCUmgr's Simple Management Protocol (SMP), the codec both sides share:
//! the 8-byte message header ([`header`]) and the serial/console transport
//! that carries SMP messages as base64 lines with a CRC-16 ([`serial`]).
//!
//! Only `core` and `heapless` are used here (no allocation, no I/O), so the
//! codec builds for `no_std` targets as well; the ports are the binaries'
//! business. References: the SMP protocol and transport specifications of
//! Zephyr's device management documentation (`smp_protocol.html`,
//! `smp_transport.html`, mcumgr's `smp-console.md`).

pub mod body;
pub mod client;
pub mod header;
pub mod serial;

pub use header::{Header, Op, HEADER_LEN};
pub use serial::{crc16, frames, frames_with_line, FrameDecoder, FrameError, MAX_LINE};

/// The management groups this device serves.
pub mod group {
    /// OS management: echo, reset, MCUmgr parameters.
    pub const OS: u16 = 0;
    /// Image management: state, upload, erase.
    pub const IMAGE: u16 = 1;
}

#[cfg(test)]
pub(crate) mod fixtures {
    /// The image-upload request documented by the `smp` 4.2.0 package
    /// (`smp.packet.decode`): header (SMP v2 write, 116-byte body, group 1,
    /// sequence 154, command 1), then the CBOR map {len: 13, off: 42,
    /// sha: "trust me bro", data: 0..64, image: 0, upgrade: false}.
    pub fn documented_upload() -> Vec<u8> {
        let mut m = vec![0x0A, 0x00, 0x00, 0x74, 0x00, 0x01, 0x9A, 0x01, 0xA6];
        m.extend_from_slice(b"\x63len\x0d\x63off\x18\x2a\x63sha\x4ctrust me bro");
        m.extend_from_slice(b"\x64data\x58\x40");
        m.extend(0u8..64);
        m.extend_from_slice(b"\x65image\x00\x67upgrade\xf4");
        m
    }
}
