//! A result destination as the user names it on the command line:
//! `AET@HOST:PORT` (plain DICOM) or `tls://AET@HOST:PORT` (DICOM TLS,
//! PS3.15 B.9). Parsing only; connecting is [`super::scu`]'s.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum DestinationError {
    #[error("{0:?}: expected AET@HOST:PORT or tls://AET@HOST:PORT")]
    Shape(String),
    #[error("{0:?}: an AE title has 1 to 16 printable ASCII characters without backslash")]
    AeTitle(String),
    #[error("{0:?}: the port is a number from 1 to 65535")]
    Port(String),
    #[error("{0:?}: the host is empty")]
    Host(String),
}

/// One configured C-STORE destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The called AE title.
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// DICOM TLS rather than plain TCP.
    pub tls: bool,
}

/// PS3.5 6.2, VR AE: 1–16 characters of printable ASCII without backslash,
/// not only spaces.
pub fn valid_ae_title(text: &str) -> bool {
    !text.trim().is_empty()
        && text.len() <= 16
        && text
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
}

impl Destination {
    pub fn parse(text: &str) -> Result<Destination, DestinationError> {
        let (tls, rest) = match text.strip_prefix("tls://") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let shape = || DestinationError::Shape(text.to_string());
        // `@` may stand in an AE title, never in a host name.
        let (ae_title, address) = rest.rsplit_once('@').ok_or_else(shape)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(shape)?;
        if !valid_ae_title(ae_title) {
            return Err(DestinationError::AeTitle(ae_title.to_string()));
        }
        // An IPv6 literal comes in brackets, as in a URL.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(DestinationError::Host(text.to_string()));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| DestinationError::Port(port.to_string()))?;
        Ok(Destination {
            ae_title: ae_title.trim().to_string(),
            host: host.to_string(),
            port,
            tls,
        })
    }

    /// A folder name for this destination's queue: stable across restarts,
    /// safe on any file system, and one per destination: the readable part
    /// maps punctuation to `_` (`PACS-1` and `PACS_1` alike), so the hash
    /// of the whole address keeps them apart.
    pub fn queue_key(&self) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        };
        let digest = crate::service::sha256_hex(self.to_string().as_bytes());
        format!(
            "{}{}-{}-{}-{}",
            if self.tls { "tls-" } else { "" },
            clean(&self.ae_title),
            clean(&self.host),
            self.port,
            digest.get(..8).unwrap_or(&digest)
        )
    }

    /// `host:port` for connecting (IPv6 literals bracketed).
    pub fn socket_address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "tls://" } else { "" };
        write!(f, "{scheme}{}@{}", self.ae_title, self.socket_address())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls_destinations_parse_into_their_parts() {
        assert_eq!(
            Destination::parse("ORTHANC@127.0.0.1:4242"),
            Ok(Destination {
                ae_title: "ORTHANC".into(),
                host: "127.0.0.1".into(),
                port: 4242,
                tls: false
            })
        );
        let tls = Destination::parse("tls://PACS_1@pacs.example.org:2762").unwrap();
        assert!(tls.tls);
        assert_eq!(tls.host, "pacs.example.org");
        assert_eq!(tls.port, 2762);
        assert_eq!(tls.to_string(), "tls://PACS_1@pacs.example.org:2762");
        // sha256 of "tls://PACS_1@pacs.example.org:2762" by sha256sum.
        assert_eq!(tls.queue_key(), "tls-PACS_1-pacs_example_org-2762-cd6f1572");
        // Alike once cleaned, apart by their hashes (f6189d3d, 9b08c0b9).
        let (dash, underscore) = (
            Destination::parse("PACS-1@h:104").unwrap().queue_key(),
            Destination::parse("PACS_1@h:104").unwrap().queue_key(),
        );
        assert_eq!(dash, "PACS_1-h-104-f6189d3d");
        assert_eq!(underscore, "PACS_1-h-104-9b08c0b9");
        assert_eq!(
            Destination::parse("AI@WORK@h:104").unwrap().ae_title,
            "AI@WORK"
        );
        let v6 = Destination::parse("PACS@[::1]:104").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.socket_address(), "[::1]:104");
    }

    #[test]
    fn malformed_destinations_are_refused_with_the_reason() {
        assert!(matches!(
            Destination::parse("127.0.0.1:4242"),
            Err(DestinationError::Shape(_))
        ));
        assert!(matches!(
            Destination::parse("PACS@127.0.0.1"),
            Err(DestinationError::Shape(_))
        ));
        assert!(matches!(
            Destination::parse("A_TITLE_LONGER_THAN_16@h:1"),
            Err(DestinationError::AeTitle(_))
        ));
        assert!(matches!(
            Destination::parse("BAD\\AE@h:1"),
            Err(DestinationError::AeTitle(_))
        ));
        assert!(matches!(
            Destination::parse("PACS@h:0"),
            Err(DestinationError::Port(_))
        ));
        assert!(matches!(
            Destination::parse("PACS@h:65536"),
            Err(DestinationError::Port(_))
        ));
        assert!(matches!(
            Destination::parse("PACS@:104"),
            Err(DestinationError::Host(_))
        ));
    }
}
