//! MCUboot's signed image format, as the bundle's outer container, so that the
//! standard field tool (`imgtool verify`) understands our bundles:
//!
//! ```text
//! header (32 bytes) | payload (img_size) | TLV info 0x6907 | TLVs
//! ```
//!
//! All integers little-endian. The TLVs written are SHA-256 (0x10) of
//! header + payload, KEYHASH (0x01, SHA-256 of the DER SubjectPublicKeyInfo of
//! the signing key) and ED25519 (0x24): an Ed25519 signature of that SHA-256
//! digest, exactly as imgtool 2.x signs ("sign the digest"). Protected TLVs
//! are not written; when present in a file they are hashed and skipped.
//!
//! Parsing never trusts a length: every offset is checked against the input
//! before it is used.

use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::BundleError;

pub const IMAGE_MAGIC: u32 = 0x96f3_b83d;
pub const HEADER_SIZE: usize = 32;
pub const TLV_INFO_MAGIC: u16 = 0x6907;
pub const TLV_PROTECTED_INFO_MAGIC: u16 = 0x6908;
pub const TLV_KEYHASH: u16 = 0x01;
pub const TLV_SHA256: u16 = 0x10;
pub const TLV_ED25519: u16 = 0x24;
const TLV_INFO_SIZE: usize = 4;
const TLV_HEADER_SIZE: usize = 4;

/// MCUboot's `image_version`: what devices compare to refuse downgrades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageVersion {
    pub major: u8,
    pub minor: u8,
    pub revision: u16,
    pub build: u32,
}

impl std::fmt::Display for ImageVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.revision)?;
        if self.build != 0 {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageVersion {
    type Err = BundleError;

    /// `MAJOR.MINOR.REVISION[+BUILD]`, each within MCUboot's field widths.
    fn from_str(s: &str) -> Result<Self, BundleError> {
        let bad = || BundleError::BadVersion(s.to_string());
        let (core, build) = match s.split_once('+') {
            Some((core, build)) => (core, build.parse::<u32>().map_err(|_| bad())?),
            None => (s, 0),
        };
        let parts: Vec<&str> = core.split('.').collect();
        let [major, minor, revision] = parts.as_slice() else {
            return Err(bad());
        };
        Ok(ImageVersion {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
            revision: revision.parse().map_err(|_| bad())?,
            build,
        })
    }
}

/// The fixed 32-byte image header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    pub load_addr: u32,
    pub header_size: u16,
    pub protected_tlv_size: u16,
    pub image_size: u32,
    pub flags: u32,
    pub version: ImageVersion,
}

impl ImageHeader {
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[0..4].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&self.load_addr.to_le_bytes());
        out[8..10].copy_from_slice(&self.header_size.to_le_bytes());
        out[10..12].copy_from_slice(&self.protected_tlv_size.to_le_bytes());
        out[12..16].copy_from_slice(&self.image_size.to_le_bytes());
        out[16..20].copy_from_slice(&self.flags.to_le_bytes());
        out[20] = self.version.major;
        out[21] = self.version.minor;
        out[22..24].copy_from_slice(&self.version.revision.to_le_bytes());
        out[24..28].copy_from_slice(&self.version.build.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ImageHeader, BundleError> {
        if bytes.len() < HEADER_SIZE {
            return Err(BundleError::Truncated("image header"));
        }
        let magic = le32(bytes, 0);
        if magic != IMAGE_MAGIC {
            return Err(BundleError::NotABundle(magic));
        }
        let header = ImageHeader {
            load_addr: le32(bytes, 4),
            header_size: le16(bytes, 8),
            protected_tlv_size: le16(bytes, 10),
            image_size: le32(bytes, 12),
            flags: le32(bytes, 16),
            version: ImageVersion {
                major: bytes[20],
                minor: bytes[21],
                revision: le16(bytes, 22),
                build: le32(bytes, 24),
            },
        };
        if usize::from(header.header_size) < HEADER_SIZE {
            return Err(BundleError::Invalid(format!(
                "header size {} is below {HEADER_SIZE}",
                header.header_size
            )));
        }
        Ok(header)
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// SHA-256 of the DER SubjectPublicKeyInfo: MCUboot's KEYHASH.
pub fn key_hash(key: &VerifyingKey) -> Result<[u8; 32], BundleError> {
    let der = key
        .to_public_key_der()
        .map_err(|e| BundleError::Key(e.to_string()))?;
    Ok(Sha256::digest(der.as_bytes()).into())
}

/// Wraps `payload` as a signed MCUboot image (what `imgtool sign
/// --pad-header -H 32 -v VERSION -k KEY` writes for the same payload).
pub fn sign_image(
    payload: &[u8],
    version: ImageVersion,
    key: &SigningKey,
) -> Result<Vec<u8>, BundleError> {
    let image_size = u32::try_from(payload.len())
        .map_err(|_| BundleError::TooLarge("payload", payload.len()))?;
    let header = ImageHeader {
        load_addr: 0,
        header_size: HEADER_SIZE as u16,
        protected_tlv_size: 0,
        image_size,
        flags: 0,
        version,
    };
    let mut out = Vec::with_capacity(HEADER_SIZE + payload.len() + 160);
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    let digest: [u8; 32] = Sha256::digest(&out).into();
    let signature = key.sign(&digest);
    let key_hash = key_hash(&key.verifying_key())?;
    let tlvs: [(u16, &[u8]); 3] = [
        (TLV_SHA256, &digest),
        (TLV_KEYHASH, &key_hash),
        (TLV_ED25519, &signature.to_bytes()),
    ];
    let total = TLV_INFO_SIZE
        + tlvs
            .iter()
            .map(|(_, v)| TLV_HEADER_SIZE + v.len())
            .sum::<usize>();
    out.extend_from_slice(&TLV_INFO_MAGIC.to_le_bytes());
    out.extend_from_slice(&(total as u16).to_le_bytes());
    for (kind, value) in tlvs {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
    }
    Ok(out)
}

/// A parsed image whose hash matched; the signature is checked separately.
#[derive(Debug, Clone)]
pub struct ParsedImage<'a> {
    pub header: ImageHeader,
    pub payload: &'a [u8],
    pub digest: [u8; 32],
    pub key_hash: Option<[u8; 32]>,
    pub signature: Option<[u8; 64]>,
}

impl ParsedImage<'_> {
    /// Checks the Ed25519 signature over the digest against `key`.
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), BundleError> {
        let bytes = self.signature.ok_or(BundleError::Unsigned)?;
        key.verify(&self.digest, &Signature::from_bytes(&bytes))
            .map_err(|_| BundleError::BadSignature)
    }
}

/// Parses and checks the structure and the SHA-256 of an image.
pub fn parse_image(bytes: &[u8]) -> Result<ParsedImage<'_>, BundleError> {
    let header = ImageHeader::decode(bytes)?;
    let header_size = usize::from(header.header_size);
    let payload_end = header_size
        .checked_add(header.image_size as usize)
        .filter(|&end| end <= bytes.len())
        .ok_or(BundleError::Truncated("payload"))?;
    let payload = &bytes[header_size..payload_end];
    let mut at = payload_end;
    // Protected TLVs are covered by the hash; we write none but accept them.
    if header.protected_tlv_size != 0 {
        let (magic, total) = tlv_info(bytes, at)?;
        if magic != TLV_PROTECTED_INFO_MAGIC || total != usize::from(header.protected_tlv_size) {
            return Err(BundleError::Invalid(
                "protected TLV area does not match the header".to_string(),
            ));
        }
        at = at
            .checked_add(total)
            .filter(|&end| end <= bytes.len())
            .ok_or(BundleError::Truncated("protected TLVs"))?;
    }
    let hashed_end = at;
    let (magic, total) = tlv_info(bytes, at)?;
    if magic != TLV_INFO_MAGIC {
        return Err(BundleError::Invalid(format!(
            "TLV info magic is {magic:#06x}, expected {TLV_INFO_MAGIC:#06x}"
        )));
    }
    let tlv_end = at
        .checked_add(total)
        .filter(|&end| end <= bytes.len() && total >= TLV_INFO_SIZE)
        .ok_or(BundleError::Truncated("TLVs"))?;
    if tlv_end != bytes.len() {
        return Err(BundleError::Invalid(format!(
            "{} trailing bytes after the TLVs",
            bytes.len() - tlv_end
        )));
    }
    at += TLV_INFO_SIZE;
    let (mut sha, mut key_hash, mut signature) = (None, None, None);
    while at < tlv_end {
        if tlv_end - at < TLV_HEADER_SIZE {
            return Err(BundleError::Truncated("TLV header"));
        }
        let kind = le16(bytes, at);
        let len = usize::from(le16(bytes, at + 2));
        let start = at + TLV_HEADER_SIZE;
        let value = bytes
            .get(start..start + len)
            .filter(|_| start + len <= tlv_end)
            .ok_or(BundleError::Truncated("TLV value"))?;
        match kind {
            TLV_SHA256 => sha = Some(fixed::<32>(value, "SHA-256 TLV")?),
            TLV_KEYHASH => key_hash = Some(fixed::<32>(value, "KEYHASH TLV")?),
            TLV_ED25519 => signature = Some(fixed::<64>(value, "ED25519 TLV")?),
            _ => {}
        }
        at = start + len;
    }
    let expected = sha.ok_or(BundleError::Invalid("no SHA-256 TLV".to_string()))?;
    let digest: [u8; 32] = Sha256::digest(&bytes[..hashed_end]).into();
    if digest != expected {
        return Err(BundleError::HashMismatch);
    }
    Ok(ParsedImage {
        header,
        payload,
        digest,
        key_hash,
        signature,
    })
}

fn tlv_info(bytes: &[u8], at: usize) -> Result<(u16, usize), BundleError> {
    if bytes.len() < at + TLV_INFO_SIZE {
        return Err(BundleError::Truncated("TLV info"));
    }
    Ok((le16(bytes, at), usize::from(le16(bytes, at + 2))))
}

fn fixed<const N: usize>(value: &[u8], what: &'static str) -> Result<[u8; N], BundleError> {
    value.try_into().map_err(|_| {
        BundleError::Invalid(format!("{what} has {} bytes, expected {N}", value.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn version() -> ImageVersion {
        "1.2.3+4".parse().unwrap()
    }

    #[test]
    fn header_bytes_are_mcuboot_layout() {
        let image = sign_image(&[0xAB; 1000], version(), &key()).unwrap();
        // Hand-written from MCUboot's struct image_header.
        let expected_header: [u8; 32] = [
            0x3d, 0xb8, 0xf3, 0x96, 0, 0, 0, 0, 0x20, 0, 0, 0, 0xe8, 0x03, 0, 0, 0, 0, 0, 0, 1, 2,
            3, 0, 4, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(image[..32], expected_header);
        // TLV info: magic 0x6907, total 4 + 36 + 36 + 68 = 144.
        assert_eq!(image[1032..1036], [0x07, 0x69, 144, 0]);
        assert_eq!(image.len(), 32 + 1000 + 144);
        assert_eq!(image[1036..1040], [0x10, 0, 32, 0]);
        assert_eq!(image[1072..1076], [0x01, 0, 32, 0]);
        assert_eq!(image[1108..1112], [0x24, 0, 64, 0]);
    }

    #[test]
    fn round_trip_and_signature() {
        let payload = b"hello bundle".to_vec();
        let image = sign_image(&payload, version(), &key()).unwrap();
        let parsed = parse_image(&image).unwrap();
        assert_eq!(parsed.payload, payload.as_slice());
        assert_eq!(parsed.header.version, version());
        assert_eq!(parsed.digest[..], Sha256::digest(&image[..32 + 12])[..]);
        parsed.verify_signature(&key().verifying_key()).unwrap();
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(matches!(
            parsed.verify_signature(&other),
            Err(BundleError::BadSignature)
        ));
        assert_eq!(
            parsed.key_hash.unwrap(),
            key_hash(&key().verifying_key()).unwrap()
        );
    }

    #[test]
    fn any_flipped_payload_or_header_byte_is_refused() {
        let image = sign_image(b"0123456789", version(), &key()).unwrap();
        for i in 0..32 + 10 {
            let mut bad = image.clone();
            bad[i] ^= 0x01;
            assert!(parse_image(&bad).is_err(), "flip at {i} accepted");
        }
        let mut bad = image.clone();
        let sig_at = bad.len() - 1;
        bad[sig_at] ^= 0x01;
        let parsed = parse_image(&bad).unwrap();
        assert!(parsed.verify_signature(&key().verifying_key()).is_err());
    }

    #[test]
    fn truncations_are_errors_not_panics() {
        let image = sign_image(b"payload", version(), &key()).unwrap();
        for len in 0..image.len() {
            assert!(parse_image(&image[..len]).is_err());
        }
    }

    #[test]
    fn versions_parse_order_and_print() {
        let v: ImageVersion = "2.0.1".parse().unwrap();
        assert_eq!(v.to_string(), "2.0.1");
        assert!(v > "1.255.65535+99".parse().unwrap());
        assert!("1.2.3+5".parse::<ImageVersion>().unwrap() > version());
        for bad in ["1.2", "1.2.3.4", "256.0.0", "1.2.x", "", "1.2.3+-1"] {
            assert!(bad.parse::<ImageVersion>().is_err(), "{bad}");
        }
    }
}
