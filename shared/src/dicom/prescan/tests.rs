//! Byte-level cases of the pre-scan, built by hand.
use super::*;

/// Preamble, marker and a meta group holding only the transfer syntax.
fn file(transfer_syntax: &str, body: &[u8]) -> Vec<u8> {
    let mut uid = transfer_syntax.as_bytes().to_vec();
    if uid.len() % 2 == 1 {
        uid.push(0);
    }
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    // (0002,0000) UL 4: the group's length, then (0002,0010) UI.
    out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    out.extend_from_slice(&(8 + uid.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
    out.extend_from_slice(&(uid.len() as u16).to_le_bytes());
    out.extend_from_slice(&uid);
    out.extend_from_slice(body);
    out
}

/// Explicit VR little endian element with a 4-byte length.
fn long(group: u16, element: u16, vr: &[u8; 2], length: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&length.to_le_bytes());
    out
}

/// Item, item delimiter or sequence delimiter (no VR in any syntax).
fn marker(element: u16, length: u32) -> Vec<u8> {
    let mut out = vec![0xFE, 0xFF];
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    out
}

const EXPLICIT: &str = "1.2.840.10008.1.2.1";

fn check(bytes: &[u8]) -> Result<(), PreprocessError> {
    prescan(bytes, DecodeLimits::default())
}

#[test]
fn a_short_value_and_an_empty_data_set_pass() {
    // (0010,0010) PN "AB".
    let body = [0x10, 0x00, 0x10, 0x00, b'P', b'N', 2, 0, b'A', b'B'];
    assert!(check(&file(EXPLICIT, &body)).is_ok());
    assert!(check(&file(EXPLICIT, &[])).is_ok());
}

#[test]
fn a_short_value_longer_than_the_file_is_refused() {
    let body = [0x10, 0x00, 0x10, 0x00, b'P', b'N', 3, 0, b'A', b'B'];
    let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
    assert!(
        err.contains("(0010,0010) declares 3 value bytes but only 2 are left"),
        "{err}"
    );
}

#[test]
fn undefined_length_sequences_and_items_are_walked() {
    let mut body = long(0x0008, 0x1140, b"SQ", UNDEFINED);
    body.extend(marker(0xE000, UNDEFINED));
    body.extend(long(0x0009, 0x1010, b"OB", 4));
    body.extend_from_slice(b"MARK");
    body.extend(marker(0xE00D, 0));
    body.extend(marker(0xE0DD, 0));
    assert!(check(&file(EXPLICIT, &body)).is_ok());
    // The same with the inner value declaring 4 GiB.
    let at = body.len() - 8 - 8 - 4; // where "MARK" starts
    body[at - 4..at].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
    assert!(
        err.contains("(0009,1010) declares 4294967280 value bytes"),
        "{err}"
    );
}

#[test]
fn a_defined_length_item_overrunning_its_sequence_is_refused() {
    // Sequence of 8 bytes holding an item that declares 10.
    let mut body = long(0x0008, 0x1140, b"SQ", 8);
    body.extend(marker(0xE000, 10));
    body.extend_from_slice(&[0; 10]);
    let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
    assert!(err.contains("past its sequence"), "{err}");
}

#[test]
fn encapsulated_fragments_must_have_defined_lengths() {
    let mut body = long(0x7FE0, 0x0010, b"OB", UNDEFINED);
    body.extend(marker(0xE000, 0)); // empty basic offset table
    body.extend(marker(0xE000, 4));
    body.extend_from_slice(&[1, 2, 3, 4]);
    body.extend(marker(0xE0DD, 0));
    assert!(check(&file(EXPLICIT, &body)).is_ok());
    let mut bad = long(0x7FE0, 0x0010, b"OB", UNDEFINED);
    bad.extend(marker(0xE000, UNDEFINED));
    let err = check(&file(EXPLICIT, &bad)).unwrap_err().to_string();
    assert!(err.contains("defined-length fragments"), "{err}");
    let mut huge = long(0x7FE0, 0x0010, b"OB", UNDEFINED);
    huge.extend(marker(0xE000, 0xFFFF_FFF0));
    let err = check(&file(EXPLICIT, &huge)).unwrap_err().to_string();
    assert!(err.contains("declares 4294967280"), "{err}");
}

#[test]
fn an_undefined_length_un_is_walked_as_dicom_rs_reads_it() {
    // dicom-rs reads any undefined-length element as a sequence in the
    // file's own encoding: an explicit-VR element inside it that
    // declares 4 GiB must be found.
    let mut body = long(0x0009, 0x1000, b"UN", UNDEFINED);
    body.extend(marker(0xE000, UNDEFINED));
    body.extend(long(0x0009, 0x1010, b"OB", 0xFFFF_FFF0));
    let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
    assert!(err.contains("declares 4294967280"), "{err}");
}

#[test]
fn unknown_vrs_have_4_byte_lengths_as_in_dicom_rs() {
    // "XX" is unknown: reserved bytes, then a 4-byte length of 4 GiB.
    let body = long(0x0009, 0x1010, b"XX", 0xFFFF_FFF0);
    let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
    assert!(err.contains("declares 4294967280"), "{err}");
}

#[test]
fn pixel_data_declared_sq_is_walked_as_a_sequence() {
    let mut body = long(0x7FE0, 0x0010, b"SQ", UNDEFINED);
    body.extend(marker(0xE000, 12));
    body.extend(long(0x0009, 0x1010, b"OB", 0xFFFF_FFF0));
    let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
    assert!(err.contains("declares 4294967280"), "{err}");
}

#[test]
fn trailing_padding_and_a_stray_delimiter_are_tolerated() {
    let mut body = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 2, 0, b'A', b'B'];
    body.extend(marker(0xE00D, 0));
    body.extend_from_slice(&[0, 0, 0]);
    assert!(check(&file(EXPLICIT, &body)).is_ok());
}

#[test]
fn the_meta_group_length_decides_where_the_data_set_starts() {
    let mut bytes = file(EXPLICIT, &[]);
    // A group length 8 bytes too long would swallow the data set's
    // first element header as meta, as dicom-rs would: the walk must
    // agree (here: the value of that "meta" element runs past the end).
    bytes.extend(long(0x0009, 0x1010, b"OB", 0xFFFF_FFF0));
    let at = 128 + 4 + 8;
    let length = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at..at + 4].copy_from_slice(&(length + 12).to_le_bytes());
    let err = check(&bytes).unwrap_err().to_string();
    assert!(err.contains("declares 4294967280"), "{err}");
    // No (0002,0000) first: refused.
    let mut bare = vec![0u8; 128];
    bare.extend_from_slice(b"DICM");
    bare.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', 2, 0, b'1', 0]);
    assert!(check(&bare)
        .unwrap_err()
        .to_string()
        .contains("(0002,0000)"));
}

#[test]
fn a_transfer_syntax_padded_with_a_tab_is_still_implicit_vr() {
    // (0010,0010), 4 GiB, in implicit VR: only an implicit reading finds it.
    let mut body = vec![0x10, 0x00, 0x10, 0x00];
    body.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let err = check(&file("1.2.840.10008.1.2\t", &body))
        .unwrap_err()
        .to_string();
    assert!(err.contains("declares 4294967280"), "{err}");
}

#[test]
fn implicit_vr_sequences_are_known_from_the_dictionary() {
    // (0008,1140) Referenced Image Sequence, 12 bytes: one item of 4
    // bytes whose content (a header cut off) is not a valid element.
    let mut body = vec![0x08, 0x00, 0x40, 0x11, 12, 0, 0, 0];
    body.extend(marker(0xE000, 4));
    body.extend_from_slice(&[0x10, 0x00, 0x10, 0x00]);
    let err = check(&file(IMPLICIT_VR_LITTLE_ENDIAN, &body))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cut off"), "{err}");
    // Not a sequence in the dictionary: the same bytes are an opaque value.
    body[2..4].copy_from_slice(&[0x3E, 0x10]); // (0008,103E) LO
    assert!(check(&file(IMPLICIT_VR_LITTLE_ENDIAN, &body)).is_ok());
}

#[test]
fn deep_nesting_is_refused_without_exhausting_the_stack() {
    let mut body = Vec::new();
    for _ in 0..(MAX_DEPTH + 4) {
        body.extend(long(0x0008, 0x1140, b"SQ", UNDEFINED));
        body.extend(marker(0xE000, UNDEFINED));
    }
    let err = check(&file(EXPLICIT, &body)).unwrap_err().to_string();
    assert!(err.contains("nested deeper"), "{err}");
}

#[test]
fn big_endian_lengths_are_read_big_endian() {
    // (0010,0010) PN, length 2 in big endian.
    let body = [0x00, 0x10, 0x00, 0x10, b'P', b'N', 0, 2, b'A', b'B'];
    assert!(check(&file(EXPLICIT_VR_BIG_ENDIAN, &body)).is_ok());
    let body = [0x00, 0x10, 0x00, 0x10, b'P', b'N', 2, 0, b'A', b'B'];
    let err = check(&file(EXPLICIT_VR_BIG_ENDIAN, &body))
        .unwrap_err()
        .to_string();
    assert!(err.contains("declares 512"), "{err}");
}
