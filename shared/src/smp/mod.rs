//! MCUmgr's Simple Management Protocol (SMP), the codec both sides share:
//! the 8-byte message header ([`header`]) and the serial/console transport
//! that carries SMP messages as base64 lines with a CRC-16 ([`serial`]).
//!
//! Only `core` and `heapless` are used here (no allocation, no I/O), so the
//! codec builds for `no_std` targets as well; the ports are the binaries'
//! business. References: the SMP protocol and transport specifications of
//! Zephyr's device management documentation (`smp_protocol.html`,
//! `smp_transport.html`, mcumgr's `smp-console.md`).

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
