//! DIMSE command sets (PS3.7 9.3, E.1): reading and writing the
//! Implicit-VR command group that travels before a data set, shared by the
//! storage receiver ([`crate::dicom_scp`]) and the result sender
//! ([`crate::outgoing::scu`]).

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
/// Command Data Set Type: a data set follows / none follows.
pub const DATA_SET_PRESENT: u16 = 0x0000;
pub const NO_DATA_SET: u16 = 0x0101;

/// A PDU's kind, without its content (which may quote a data set): what
/// the logs say of an unexpected PDU.
pub fn pdu_name(pdu: &dicom_ul::pdu::Pdu) -> &'static str {
    use dicom_ul::pdu::Pdu;
    match pdu {
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
        Pdu::Unknown { .. } => "unknown",
    }
}

pub fn read_command(bytes: &[u8]) -> Result<InMemDicomObject, String> {
    InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| e.to_string())
}

pub fn command_u16(object: &InMemDicomObject, tag: Tag) -> Result<u16, String> {
    object
        .element(tag)
        .ok()
        .and_then(|e| e.to_int::<u16>().ok())
        .ok_or_else(|| format!("{tag} missing"))
}

pub fn command_text(object: &InMemDicomObject, tag: Tag) -> Result<String, String> {
    object
        .element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("{tag} missing"))
}

/// UIDs are padded to even length with a NUL.
fn uid_value(uid: &str) -> String {
    let mut value = uid.to_string();
    if value.len() % 2 == 1 {
        value.push('\0');
    }
    value
}

pub fn uid_element(tag: Tag, uid: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(uid_value(uid)))
}

pub fn us_element(tag: Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

/// The encoded command, Command Group Length (0000,0000) first: the
/// encoded size of the rest.
pub fn encode_command(command: &InMemDicomObject) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    command
        .write_dataset_with_ts(&mut body, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| e.to_string())?;
    let length = u32::try_from(body.len()).map_err(|_| "command too large".to_string())?;
    let mut full = command.clone();
    full.put(DataElement::new(
        tags::COMMAND_GROUP_LENGTH,
        VR::UL,
        PrimitiveValue::from(length),
    ));
    let mut bytes = Vec::new();
    full.write_dataset_with_ts(&mut bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// A C-STORE-RQ for one instance (PS3.7 9.3.1.1), priority medium.
pub fn store_request(message_id: u16, sop_class: &str, sop_instance: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        uid_element(tags::AFFECTED_SOP_CLASS_UID, sop_class),
        us_element(tags::COMMAND_FIELD, C_STORE_RQ),
        us_element(tags::MESSAGE_ID, message_id),
        us_element(tags::PRIORITY, 0),
        us_element(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
        uid_element(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_request_encodes_as_ps3_7_lays_it_out() {
        let bytes = encode_command(&store_request(7, "1.2.3", "4.5")).unwrap();
        // Group length element: tag (0000,0000), length 4, value = the rest.
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        let rest = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!(bytes.len(), 12 + rest);
        // Affected SOP Class UID (0000,0002): "1.2.3" padded with NUL to 6.
        assert_eq!(&bytes[12..20], &[0, 0, 2, 0, 6, 0, 0, 0]);
        assert_eq!(&bytes[20..26], b"1.2.3\0");
        // Command Field (0000,0100) = 0x0001.
        assert_eq!(&bytes[26..36], &[0, 0, 0, 1, 2, 0, 0, 0, 1, 0]);
        let back = read_command(&bytes).unwrap();
        assert_eq!(command_u16(&back, tags::MESSAGE_ID).unwrap(), 7);
        assert_eq!(
            command_text(&back, tags::AFFECTED_SOP_INSTANCE_UID).unwrap(),
            "4.5"
        );
    }
}
