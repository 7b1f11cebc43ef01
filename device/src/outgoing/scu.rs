//! The storage SCU that delivers results: one association per batch,
//! C-STORE of each queued object (PS3.7 9.1.1), its response status read.
//! Plain TCP or DICOM TLS (PS3.15 B.9) with the client configuration of
//! [`crate::tls`].

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use dicom_ul::association::client::TlsStream;
use dicom_ul::association::CloseSocket;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use dicom_ul::{ClientAssociation, ClientAssociationOptions};
use thiserror::Error;

use super::destination::Destination;
use crate::dimse::{
    command_u16, encode_command, pdu_name, read_command, store_request, C_STORE_RSP,
};
use crate::results::{COMPREHENSIVE_3D_SR, SECONDARY_CAPTURE};

/// Explicit VR Little Endian first (what our files are in), Implicit VR
/// Little Endian (every node's default) as the fallback.
const PROPOSED_SYNTAXES: [&str; 2] = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"];
/// Largest C-STORE response accepted (a few hundred bytes in practice).
const MAX_RESPONSE_BYTES: usize = 64 << 10;

#[derive(Debug, Error)]
pub enum ScuError {
    /// The destination could not be reached or the association failed:
    /// worth retrying later.
    #[error("{destination}: {message}")]
    Unreachable {
        destination: String,
        message: String,
    },
    /// The destination answered but will not take this object (a failure
    /// status, or no accepted presentation context for its SOP class).
    #[error("{destination}: refused: {message}")]
    Refused {
        destination: String,
        message: String,
    },
    /// The queued file itself is unreadable: sending it again cannot help.
    #[error("queued object unreadable: {0}")]
    Object(String),
}

impl ScuError {
    /// Whether sending this object again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ScuError::Unreachable { .. })
    }
}

/// What a C-STORE response's status means for the object (PS3.4 Table
/// B.2-1 for the Storage Service Class, PS3.7 C.4 for the general codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMeaning {
    /// Success, or a warning that still means stored: B000 coercion,
    /// B006 elements discarded, B007 data set does not match the SOP class;
    /// 0001, 0107, 0116 (general warnings).
    Stored,
    /// The destination cannot take it now: A7xx out of resources, 0213
    /// resource limitation, 0110 processing failure. Sent again later.
    TryLater,
    /// The destination will not take this object: A9xx, Cxxx, 0122 SOP
    /// class not supported, and every other failure.
    Refused,
}

pub fn status_meaning(status: u16) -> StatusMeaning {
    match status {
        0x0000 | 0x0001 | 0x0107 | 0x0116 => StatusMeaning::Stored,
        s if s & 0xF000 == 0xB000 => StatusMeaning::Stored,
        s if s & 0xFF00 == 0xA700 => StatusMeaning::TryLater,
        0x0213 | 0x0110 => StatusMeaning::TryLater,
        _ => StatusMeaning::Refused,
    }
}

/// The association's settings.
#[derive(Clone)]
pub struct Client {
    pub calling_ae_title: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub timeout: Duration,
}

enum Link {
    Plain(ClientAssociation<TcpStream>),
    // Boxed: the TLS state is most of a kilobyte (clippy's large variant).
    Tls(Box<ClientAssociation<TlsStream>>),
}

/// An open association with one destination.
pub struct Session {
    link: Link,
    destination: String,
    next_message_id: u16,
}

impl Client {
    /// Opens an association proposing the two result SOP classes.
    pub fn open(&self, destination: &Destination) -> Result<Session, ScuError> {
        let name = destination.to_string();
        let unreachable = |message: String| ScuError::Unreachable {
            destination: name.clone(),
            message,
        };
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(self.calling_ae_title.clone())
            .called_ae_title(destination.ae_title.clone())
            .connection_timeout(self.timeout)
            .read_timeout(self.timeout)
            .write_timeout(self.timeout);
        for class in [SECONDARY_CAPTURE, COMPREHENSIVE_3D_SR] {
            options = options.with_presentation_context(class, PROPOSED_SYNTAXES.to_vec());
        }
        let address = destination.socket_address();
        let mut link = if destination.tls {
            let config = self.tls.clone().ok_or_else(|| {
                unreachable("a tls:// destination needs the TLS settings (--tls-ca)".into())
            })?;
            options
                .tls_config(config)
                .server_name(&destination.host)
                .establish_tls(address.as_str())
                .map(|a| Link::Tls(Box::new(a)))
        } else {
            options.establish(address.as_str()).map(Link::Plain)
        }
        .map_err(|e| unreachable(format!("association: {}", with_causes(&e))))?;
        // A C-STORE is a small command PDU, the data set, then a wait for
        // a small response: with Nagle's algorithm against the peer's
        // delayed ACKs each object would stall about 40 ms.
        let socket = match &mut link {
            Link::Plain(a) => a.inner_stream(),
            Link::Tls(a) => a.inner_stream().get_mut(),
        };
        if let Err(e) = socket.set_nodelay(true) {
            return Err(unreachable(format!("setting TCP_NODELAY: {e}")));
        }
        Ok(Session {
            link,
            destination: name,
            next_message_id: 1,
        })
    }
}

impl Session {
    /// C-STORE of one Part 10 file; the response's status, or why not.
    pub fn store(&mut self, part10: &[u8]) -> Result<u16, ScuError> {
        let message_id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        let destination = self.destination.clone();
        match &mut self.link {
            Link::Plain(a) => store_on(a, &destination, message_id, part10),
            Link::Tls(a) => store_on(a.as_mut(), &destination, message_id, part10),
        }
    }

    /// Aborts the association (A-ABORT) after a failure mid-transfer: the
    /// peer must not take a half-sent object for a whole one.
    pub fn abort(self) {
        let _ = match self.link {
            Link::Plain(a) => a.abort(),
            Link::Tls(a) => (*a).abort(),
        };
    }

    /// Releases the association (A-RELEASE); errors only mean the peer
    /// went first.
    pub fn release(self) {
        let _ = match self.link {
            Link::Plain(a) => a.release(),
            Link::Tls(a) => (*a).release(),
        };
    }
}

fn store_on<S: std::io::Read + std::io::Write + CloseSocket>(
    association: &mut ClientAssociation<S>,
    destination: &str,
    message_id: u16,
    part10: &[u8],
) -> Result<u16, ScuError> {
    let unreachable = |message: String| ScuError::Unreachable {
        destination: destination.to_string(),
        message,
    };
    let object = OpenFileOptions::new()
        .from_reader(part10)
        .map_err(|e| ScuError::Object(e.to_string()))?;
    let class = object.meta().media_storage_sop_class_uid().to_string();
    let instance = object.meta().media_storage_sop_instance_uid().to_string();
    let context = association
        .presentation_contexts()
        .iter()
        .find(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance
                && pc.abstract_syntax.trim_end_matches('\0') == class
        })
        .cloned()
        .ok_or_else(|| ScuError::Refused {
            destination: destination.to_string(),
            message: format!("no presentation context accepted for SOP class {class}"),
        })?;
    let syntax = TransferSyntaxRegistry
        .get(context.transfer_syntax.trim_end_matches('\0'))
        .ok_or_else(|| {
            unreachable(format!(
                "unknown transfer syntax {}",
                context.transfer_syntax
            ))
        })?;
    let mut data = Vec::with_capacity(part10.len());
    object
        .write_dataset_with_ts(&mut data, syntax)
        .map_err(|e| ScuError::Object(e.to_string()))?;
    let command =
        encode_command(&store_request(message_id, &class, &instance)).map_err(ScuError::Object)?;
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context.id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command,
            }],
        })
        .map_err(|e| unreachable(format!("sending the command: {e}")))?;
    {
        let mut writer = association.send_pdata(context.id);
        if let Err(e) = writer.write_all(&data) {
            // Dropped, the writer would send what it holds as the last
            // fragment: a truncated object marked complete.
            writer.abandon();
            return Err(unreachable(format!("sending the data set: {e}")));
        }
        writer
            .finish()
            .map_err(|e| unreachable(format!("sending the data set: {e}")))?;
    }
    let response = receive_command(association, destination)?;
    let kind = command_u16(&response, tags::COMMAND_FIELD)
        .map_err(|e| unreachable(format!("malformed response: {e}")))?;
    if kind != C_STORE_RSP {
        return Err(unreachable(format!(
            "expected C-STORE-RSP, got command {kind:#06x}"
        )));
    }
    let answered = command_u16(&response, tags::MESSAGE_ID_BEING_RESPONDED_TO)
        .map_err(|e| unreachable(format!("malformed response: {e}")))?;
    if answered != message_id {
        return Err(unreachable(format!(
            "response to message {answered}, expected {message_id}"
        )));
    }
    let status = command_u16(&response, tags::STATUS)
        .map_err(|e| unreachable(format!("malformed response: {e}")))?;
    match status_meaning(status) {
        StatusMeaning::Stored => Ok(status),
        StatusMeaning::TryLater => Err(unreachable(format!(
            "C-STORE status {status:#06x}: the destination cannot store now"
        ))),
        StatusMeaning::Refused => Err(ScuError::Refused {
            destination: destination.to_string(),
            message: format!("C-STORE status {status:#06x}"),
        }),
    }
}

/// The next command set from the peer, its fragments joined.
fn receive_command<S: std::io::Read + std::io::Write + CloseSocket>(
    association: &mut ClientAssociation<S>,
    destination: &str,
) -> Result<dicom_object::InMemDicomObject, ScuError> {
    let unreachable = |message: String| ScuError::Unreachable {
        destination: destination.to_string(),
        message,
    };
    let mut bytes = Vec::new();
    loop {
        let pdu = association
            .receive()
            .map_err(|e| unreachable(format!("waiting for the response: {e}")))?;
        match pdu {
            Pdu::PData { data } => {
                for value in data {
                    if value.value_type != PDataValueType::Command {
                        continue;
                    }
                    bytes.extend_from_slice(&value.data);
                    if bytes.len() > MAX_RESPONSE_BYTES {
                        return Err(unreachable("response too large".into()));
                    }
                    if value.is_last {
                        return read_command(&bytes)
                            .map_err(|e| unreachable(format!("malformed response: {e}")));
                    }
                }
            }
            Pdu::AbortRQ { .. } => {
                return Err(unreachable("association aborted by the peer".into()))
            }
            Pdu::ReleaseRQ => {
                let _ = association.send(&Pdu::ReleaseRP);
                return Err(unreachable("association released by the peer".into()));
            }
            other => {
                return Err(unreachable(format!(
                    "unexpected PDU while waiting for the response: {}",
                    pdu_name(&other)
                )))
            }
        }
    }
}

/// An error and its causes, `: `-joined: dicom-ul's TLS errors say only
/// "failed to handshake"; the cause says why (UnknownIssuer, Expired).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{status_meaning, StatusMeaning::*};

    #[test]
    fn statuses_read_as_the_standard_defines_them() {
        // PS3.4 Table B.2-1 (Storage Service Class), PS3.7 C.4 (general).
        for (status, meaning) in [
            (0x0000, Stored),
            (0xB000, Stored),
            (0xB006, Stored),
            (0xB007, Stored),
            (0x0001, Stored),
            (0x0107, Stored),
            (0x0116, Stored),
            (0xA700, TryLater),
            (0xA7FF, TryLater),
            (0x0213, TryLater),
            (0x0110, TryLater),
            (0xA900, Refused),
            (0xC000, Refused),
            (0xCFFF, Refused),
            (0x0122, Refused),
            (0x0211, Refused),
            (0xFE00, Refused),
        ] {
            assert_eq!(status_meaning(status), meaning, "{status:#06x}");
        }
    }
}
