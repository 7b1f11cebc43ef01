//! DICOM storage receiver (C-ECHO and C-STORE SCP) beside the inbox service:
//! a scanner pushes slices over the network, each received object is written
//! into the inbox as a Part 10 file (atomically: a hidden temporary name,
//! then a rename), and the inbox service triages it like a dropped file.
//!
//! Every association runs on its own thread with read and write timeouts, so
//! a slow or dropped association never stalls triage; an object is written
//! only when it arrived whole. Only Verification and MR Image Storage are
//! accepted, in transfer syntaxes the front end decodes; other presentation
//! contexts are rejected in the negotiation, and a store on anything but an
//! accepted MR context ends the association. Received files
//! are named by the hash of their SOP Instance UID, never by patient data.

use crate::dicom_access::CallerPolicy;
use crate::dimse::{
    command_text, command_u16, encode_command, pdu_name, read_command, uid_element, us_element,
    C_ECHO_RQ, C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP, NO_DATA_SET,
};
use crate::service::write_atomic;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dicom_dictionary_std::tags;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use dicom_ul::association::server::ServerAssociationOptions;
use dicom_ul::association::{Association, CloseSocket};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use dicom_ul::ServerAssociation;
use thiserror::Error;
use tumorxai_shared::dicom::uid_hash;

/// Verification SOP Class (C-ECHO).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";
/// MR Image Storage.
pub const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
/// Transfer syntaxes the DICOM front end decodes.
pub const TRANSFER_SYNTAXES: [&str; 6] = [
    "1.2.840.10008.1.2",      // Implicit VR Little Endian
    "1.2.840.10008.1.2.1",    // Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99", // Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.5",    // RLE Lossless
    "1.2.840.10008.1.2.4.50", // JPEG Baseline
    "1.2.840.10008.1.2.4.70", // JPEG Lossless SV1
];

/// Largest object accepted (an MR slice is well under 10 MB).
pub const MAX_OBJECT_BYTES: usize = 64 << 20;
/// Largest command set accepted (a C-STORE-RQ is a few hundred bytes).
const MAX_COMMAND_BYTES: usize = 64 << 10;
/// Associations served at once; more are closed on arrival.
pub const MAX_ASSOCIATIONS: usize = 8;

#[derive(Debug, Error)]
pub enum ScpError {
    #[error("association: {0}")]
    Association(String),
    #[error("malformed command: {0}")]
    Command(String),
    #[error("object larger than {MAX_OBJECT_BYTES} bytes")]
    TooLarge,
    #[error("writing into the inbox: {0}")]
    Io(#[from] std::io::Error),
}

/// The receiver's settings.
#[derive(Debug, Clone)]
pub struct ScpConfig {
    pub ae_title: String,
    /// Calling AE titles allowed to associate; empty: any caller.
    pub allowed_callers: Vec<String>,
    pub inbox: PathBuf,
    /// Read/write timeout of one association.
    pub timeout: Duration,
    /// DICOM TLS (PS3.15 B.9): the receiver speaks TLS only.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// What one association did, for the log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AssociationReport {
    pub calling_ae_title: String,
    pub echoes: usize,
    /// Inbox names of the stored objects.
    pub stored: Vec<String>,
}

/// Accepts associations until `stop` is set, each on its own thread.
/// `log` receives one line per association (never patient data).
pub fn serve(
    listener: TcpListener,
    config: ScpConfig,
    stop: Arc<AtomicBool>,
    log: impl Fn(String) + Send + Sync + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let log = Arc::new(log);
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((socket, peer)) => {
                if active.load(Ordering::SeqCst) >= MAX_ASSOCIATIONS {
                    log(format!(
                        "dicom: {peer} refused: {MAX_ASSOCIATIONS} associations already open"
                    ));
                    drop(socket);
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (config, log, active) = (config.clone(), Arc::clone(&log), Arc::clone(&active));
                std::thread::spawn(move || {
                    let line = match handle_association(socket, &config) {
                        Ok(r) => format!(
                            "dicom: association from {} ({peer}): {} echo, {} stored",
                            r.calling_ae_title,
                            r.echoes,
                            r.stored.len()
                        ),
                        Err(e) => format!("dicom: association from {peer} ended: {e}"),
                    };
                    active.fetch_sub(1, Ordering::SeqCst);
                    log(line);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            // E.g. out of file descriptors: the receiver waits and goes on
            // rather than stopping for good.
            Err(e) => {
                log(format!("dicom: accepting a connection failed: {e}"));
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    Ok(())
}

/// One association: negotiate, answer C-ECHO and C-STORE requests until
/// release or abort.
pub fn handle_association(
    socket: TcpStream,
    config: &ScpConfig,
) -> Result<AssociationReport, ScpError> {
    socket.set_nonblocking(false)?;
    // The timeouts go through the association options: establish() applies
    // its own socket options and would reset timeouts set on the socket.
    let policy = CallerPolicy::new(&config.allowed_callers);
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(policy.clone())
        .ae_title(config.ae_title.clone())
        .read_timeout(config.timeout)
        .write_timeout(config.timeout)
        .with_abstract_syntax(VERIFICATION)
        .with_abstract_syntax(MR_IMAGE_STORAGE);
    for ts in TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(ts);
    }
    // The negotiation error's text can quote the offending PDU, data set
    // bytes included: log only that negotiation failed.
    let refused = |tls: bool| {
        ScpError::Association(match policy.refused_caller() {
            Some(caller) => format!(
                "rejected: calling AE title {caller:?} is not on the allow-list (--allow-calling-ae)"
            ),
            None if tls => "TLS handshake or negotiation failed or refused".into(),
            None => "negotiation failed or refused".into(),
        })
    };
    match &config.tls {
        Some(tls) => {
            let options = options.tls_config(Arc::clone(tls));
            let association = options.establish_tls(socket).map_err(|_| refused(true))?;
            serve_association(association, config)
        }
        None => {
            let association = options.establish(socket).map_err(|_| refused(false))?;
            serve_association(association, config)
        }
    }
}

/// C-ECHO and C-STORE requests on an established association until
/// release or abort.
fn serve_association<S: std::io::Read + std::io::Write + CloseSocket>(
    mut association: ServerAssociation<S>,
    config: &ScpConfig,
) -> Result<AssociationReport, ScpError> {
    let mut report = AssociationReport {
        calling_ae_title: association.peer_ae_title().to_string(),
        ..AssociationReport::default()
    };
    // Only accepted contexts: the list also holds the rejected ones, with a
    // placeholder transfer syntax.
    let contexts: Vec<(u8, String, String)> = association
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| {
            (
                pc.id,
                pc.abstract_syntax.trim_end_matches('\0').to_string(),
                pc.transfer_syntax.trim_end_matches('\0').to_string(),
            )
        })
        .collect();
    let mut command: Vec<u8> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut pending: Option<(u8, InMemDicomObject)> = None;
    loop {
        let pdu = association
            .receive()
            .map_err(|e| ScpError::Association(e.to_string()))?;
        match pdu {
            Pdu::PData { data: values } => {
                for value in values {
                    match value.value_type {
                        PDataValueType::Command => {
                            if pending.is_some() {
                                return Err(ScpError::Command(
                                    "a new command before the data set of the last".into(),
                                ));
                            }
                            if command.len().saturating_add(value.data.len()) > MAX_COMMAND_BYTES {
                                return Err(ScpError::TooLarge);
                            }
                            command.extend_from_slice(&value.data);
                            if !value.is_last {
                                continue;
                            }
                            let object = read_command(&command).map_err(ScpError::Command)?;
                            command.clear();
                            let field = command_u16(&object, tags::COMMAND_FIELD)
                                .map_err(ScpError::Command)?;
                            match field {
                                C_ECHO_RQ => {
                                    let rsp = response(&object, C_ECHO_RSP, VERIFICATION)?;
                                    send_command(
                                        &mut association,
                                        value.presentation_context_id,
                                        &rsp,
                                    )?;
                                    report.echoes += 1;
                                }
                                C_STORE_RQ => {
                                    if !data.is_empty() {
                                        return Err(ScpError::Command(
                                            "data set fragments before their command".into(),
                                        ));
                                    }
                                    pending = Some((value.presentation_context_id, object));
                                }
                                other => {
                                    return Err(ScpError::Command(format!(
                                        "command field {other:#06x} not supported"
                                    )))
                                }
                            }
                        }
                        PDataValueType::Data => {
                            let Some((context, _)) = pending.as_ref() else {
                                return Err(ScpError::Command(
                                    "data set fragments before their command".into(),
                                ));
                            };
                            if *context != value.presentation_context_id {
                                return Err(ScpError::Command(
                                    "data set on another presentation context than its command"
                                        .into(),
                                ));
                            }
                            if data.len().saturating_add(value.data.len()) > MAX_OBJECT_BYTES {
                                return Err(ScpError::TooLarge);
                            }
                            data.extend_from_slice(&value.data);
                            if !value.is_last {
                                continue;
                            }
                            let Some((context, request)) = pending.take() else {
                                return Err(ScpError::Command(
                                    "data without a C-STORE request".into(),
                                ));
                            };
                            let (abstract_syntax, transfer_syntax) = contexts
                                .iter()
                                .find(|(id, _, _)| *id == context)
                                .map(|(_, a, ts)| (a.clone(), ts.clone()))
                                .ok_or_else(|| {
                                    ScpError::Command("no accepted presentation context".into())
                                })?;
                            let sop_class = command_text(&request, tags::AFFECTED_SOP_CLASS_UID)
                                .map_err(ScpError::Command)?;
                            if abstract_syntax != MR_IMAGE_STORAGE || sop_class != MR_IMAGE_STORAGE
                            {
                                return Err(ScpError::Command(format!(
                                    "C-STORE of SOP class {sop_class}: only MR Image Storage is accepted"
                                )));
                            }
                            let sop_instance =
                                command_text(&request, tags::AFFECTED_SOP_INSTANCE_UID)
                                    .map_err(ScpError::Command)?;
                            let name = store(
                                &config.inbox,
                                &sop_class,
                                &sop_instance,
                                &transfer_syntax,
                                &data,
                            )?;
                            data.clear();
                            let rsp = response(&request, C_STORE_RSP, &sop_class)?;
                            let rsp = with_instance(rsp, &sop_instance);
                            send_command(&mut association, context, &rsp)?;
                            report.stored.push(name);
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                let _ = association.send(&Pdu::ReleaseRP);
                return Ok(report);
            }
            Pdu::AbortRQ { .. } => return Ok(report),
            other => {
                return Err(ScpError::Association(format!(
                    "unexpected PDU {}",
                    pdu_name(&other)
                )))
            }
        }
    }
}

/// A response command: same message, status Success, no data set.
fn response(
    request: &InMemDicomObject,
    field: u16,
    sop_class: &str,
) -> Result<InMemDicomObject, ScpError> {
    let message_id = command_u16(request, tags::MESSAGE_ID).map_err(ScpError::Command)?;
    Ok(InMemDicomObject::from_element_iter([
        uid_element(tags::AFFECTED_SOP_CLASS_UID, sop_class),
        us_element(tags::COMMAND_FIELD, field),
        us_element(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id),
        us_element(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
        us_element(tags::STATUS, 0x0000),
    ]))
}

fn with_instance(mut rsp: InMemDicomObject, sop_instance: &str) -> InMemDicomObject {
    rsp.put(uid_element(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance));
    rsp
}

fn send_command<S: std::io::Read + std::io::Write + CloseSocket>(
    association: &mut ServerAssociation<S>,
    context: u8,
    command: &InMemDicomObject,
) -> Result<(), ScpError> {
    let bytes = encode_command(command).map_err(ScpError::Command)?;
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context,
                value_type: PDataValueType::Command,
                is_last: true,
                data: bytes,
            }],
        })
        .map_err(|e| ScpError::Association(e.to_string()))
}

/// Writes a received data set as a Part 10 file into the inbox: preamble,
/// "DICM", file meta group, then the data set exactly as received. Name:
/// `dicom-<hash of the SOP Instance UID>.dcm`; written atomically under a
/// hidden temporary name, which the inbox never picks up.
pub fn store(
    inbox: &Path,
    sop_class: &str,
    sop_instance: &str,
    transfer_syntax: &str,
    dataset: &[u8],
) -> Result<String, ScpError> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_instance)
        .transfer_syntax(transfer_syntax)
        .build()
        .map_err(|e| ScpError::Command(e.to_string()))?;
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    meta.write(&mut bytes)
        .map_err(|e| ScpError::Command(e.to_string()))?;
    bytes.extend_from_slice(dataset);
    let name = format!("dicom-{}.dcm", uid_hash(sop_instance));
    write_atomic(&inbox.join(&name), &bytes)?;
    Ok(name)
}
