//! The signed model bundle: the one file that travels from the workstation to
//! every device. An MCUboot signed image ([`mcuboot`]) whose payload is a
//! section container ([`payload`]) holding the manifest ([`manifest`]), the
//! ONNX model, and golden self-test vectors with their input images.
//!
//! Reading is two-step on purpose: [`read_bundle`] parses and checks the
//! structure and hash (enough for `inspect`), [`ReadBundle::verify`] checks
//! the Ed25519 signature against a trust store. Devices only use verified
//! bundles.

pub mod manifest;
pub mod mcuboot;
pub mod payload;

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use manifest::{
    max_logit_tolerance, rfc3339_utc, GoldenVector, Manifest, OodCalibration, OodGaussians,
    Outputs, Quantization, QuantizationForm, Training, MANIFEST_FORMAT,
};
pub use mcuboot::{ImageHeader, ImageVersion};

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BundleError {
    #[error("not a model bundle (magic {0:#010x}, expected MCUboot's 0x96f3b83d)")]
    NotABundle(u32),
    #[error("bundle is truncated ({0})")]
    Truncated(&'static str),
    #[error("bundle {0} is too large ({1})")]
    TooLarge(&'static str, usize),
    #[error("invalid bundle: {0}")]
    Invalid(String),
    #[error("invalid version {0:?}: expected MAJOR.MINOR.REVISION[+BUILD] (≤255.≤255.≤65535)")]
    BadVersion(String),
    #[error("bundle hash does not match its contents (corrupted or tampered)")]
    HashMismatch,
    #[error("bundle is not signed")]
    Unsigned,
    #[error("bundle signature is not valid for the given key")]
    BadSignature,
    #[error("bundle is signed by a key that is not in the trust store (key hash {0})")]
    UntrustedKey(String),
    #[error("key: {0}")]
    Key(String),
    #[error("refusing downgrade of {model_id}: installed {installed}, bundle {candidate}")]
    Downgrade {
        model_id: String,
        installed: String,
        candidate: String,
    },
}

/// What goes into a bundle (owned; for writing).
#[derive(Debug, Clone, PartialEq)]
pub struct BundleContents {
    pub manifest: Manifest,
    pub model: Vec<u8>,
    pub golden: Vec<GoldenVector>,
    pub golden_images: Vec<Vec<u8>>,
    /// Out-of-distribution statistics section (Mahalanobis), as the manifest
    /// describes it.
    pub ood_statistics: Option<Vec<u8>>,
}

/// The statistics section must be present exactly when the manifest
/// describes one, with its length and hash.
fn check_ood_statistics(manifest: &Manifest, section: Option<&[u8]>) -> Result<(), BundleError> {
    let layout = manifest.ood.as_ref().and_then(|o| o.gaussians.as_ref());
    match (layout, section) {
        (None, None) => Ok(()),
        (Some(g), Some(bytes))
            if g.section_len() == Some(bytes.len())
                && hex::encode(Sha256::digest(bytes)) == g.sha256 =>
        {
            Ok(())
        }
        (Some(_), Some(_)) => Err(BundleError::Invalid(
            "ood statistics section does not match the manifest's size or sha256".to_string(),
        )),
        (Some(_), None) => Err(BundleError::Invalid(
            "manifest describes ood statistics but the bundle has none".to_string(),
        )),
        (None, Some(_)) => Err(BundleError::Invalid(
            "ood statistics section that the manifest does not describe".to_string(),
        )),
    }
}

/// Validates `contents` and writes the signed bundle bytes.
pub fn write_bundle(contents: &BundleContents, key: &SigningKey) -> Result<Vec<u8>, BundleError> {
    let manifest = &contents.manifest;
    manifest.validate()?;
    manifest.validate_golden(&contents.golden)?;
    if hex::encode(Sha256::digest(&contents.model)) != manifest.model_sha256 {
        return Err(BundleError::Invalid(
            "manifest model_sha256 is not the hash of the model".to_string(),
        ));
    }
    check_golden_images(&contents.golden, &contents.golden_images)?;
    check_ood_statistics(manifest, contents.ood_statistics.as_deref())?;
    let manifest_json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| BundleError::Invalid(format!("manifest: {e}")))?;
    let golden_json = serde_json::to_vec(&contents.golden)
        .map_err(|e| BundleError::Invalid(format!("golden vectors: {e}")))?;
    let payload = payload::encode_sections(&payload::Sections {
        manifest: &manifest_json,
        model: &contents.model,
        golden: Some(&golden_json),
        golden_images: contents.golden_images.iter().map(Vec::as_slice).collect(),
        ood_statistics: contents.ood_statistics.as_deref(),
    })?;
    mcuboot::sign_image(&payload, manifest.image_version()?, key)
}

fn check_golden_images<I: AsRef<[u8]>>(
    golden: &[GoldenVector],
    images: &[I],
) -> Result<(), BundleError> {
    if golden.len() != images.len() {
        return Err(BundleError::Invalid(format!(
            "{} golden vectors but {} golden images",
            golden.len(),
            images.len()
        )));
    }
    for (g, image) in golden.iter().zip(images) {
        if hex::encode(Sha256::digest(image.as_ref())) != g.image_sha256 {
            return Err(BundleError::Invalid(format!(
                "golden image of {:?} does not match its hash",
                g.name
            )));
        }
    }
    Ok(())
}

/// A structurally valid bundle whose hash matched; not yet signature-checked.
#[derive(Debug, Clone)]
pub struct ReadBundle<'a> {
    pub header: ImageHeader,
    pub manifest: Manifest,
    pub model: &'a [u8],
    pub golden: Vec<GoldenVector>,
    pub golden_images: Vec<&'a [u8]>,
    /// Out-of-distribution statistics (checked against the manifest).
    pub ood_statistics: Option<&'a [u8]>,
    /// SHA-256 over header + payload (the MCUboot image digest).
    pub digest: [u8; 32],
    /// MCUboot KEYHASH of the signer, when present.
    pub key_hash: Option<[u8; 32]>,
    image: mcuboot::ParsedImage<'a>,
}

/// Parses a bundle and checks everything but the signature.
pub fn read_bundle(bytes: &[u8]) -> Result<ReadBundle<'_>, BundleError> {
    let image = mcuboot::parse_image(bytes)?;
    let sections = payload::decode_sections(image.payload)?;
    let manifest: Manifest = serde_json::from_slice(sections.manifest)
        .map_err(|e| BundleError::Invalid(format!("manifest: {e}")))?;
    manifest.validate()?;
    if manifest.image_version()? != image.header.version {
        return Err(BundleError::Invalid(format!(
            "manifest version {} differs from the image header's {}",
            manifest.version, image.header.version
        )));
    }
    if hex::encode(Sha256::digest(sections.model)) != manifest.model_sha256 {
        return Err(BundleError::Invalid(
            "model section does not match manifest model_sha256".to_string(),
        ));
    }
    let golden: Vec<GoldenVector> = match sections.golden {
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|e| BundleError::Invalid(format!("golden vectors: {e}")))?,
        None => Vec::new(),
    };
    manifest.validate_golden(&golden)?;
    check_golden_images(&golden, &sections.golden_images)?;
    check_ood_statistics(&manifest, sections.ood_statistics)?;
    Ok(ReadBundle {
        header: image.header,
        manifest,
        model: sections.model,
        golden,
        golden_images: sections.golden_images,
        ood_statistics: sections.ood_statistics,
        digest: image.digest,
        key_hash: image.key_hash,
        image,
    })
}

impl ReadBundle<'_> {
    /// The same model, golden vectors and statistics released again under
    /// `model_id` and `version`, signed with `key` (e.g. promoting a
    /// release candidate, or a test fleet's re-signed copy).
    pub fn resigned(
        &self,
        model_id: &str,
        version: &str,
        key: &SigningKey,
    ) -> Result<Vec<u8>, BundleError> {
        let mut contents = self.contents();
        contents.manifest.model_id = model_id.to_string();
        contents.manifest.version = version.to_string();
        write_bundle(&contents, key)
    }

    /// An owned copy of what the bundle holds, to write again (re-signing).
    pub fn contents(&self) -> BundleContents {
        BundleContents {
            manifest: self.manifest.clone(),
            model: self.model.to_vec(),
            golden: self.golden.clone(),
            golden_images: self.golden_images.iter().map(|g| g.to_vec()).collect(),
            ood_statistics: self.ood_statistics.map(<[u8]>::to_vec),
        }
    }

    /// Checks the signature against `key`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), BundleError> {
        self.image.verify_signature(key)
    }

    /// Checks the signature against any key of a trust store; returns the
    /// index of the key that signed it.
    pub fn verify_trusted(&self, trust: &[VerifyingKey]) -> Result<usize, BundleError> {
        for (i, key) in trust.iter().enumerate() {
            if self.verify(key).is_ok() {
                return Ok(i);
            }
        }
        match self.key_hash {
            // The bundle names a trusted key, yet that key's check failed:
            // the signature (or what it covers) is damaged, not foreign.
            Some(hash)
                if trust
                    .iter()
                    .any(|key| mcuboot::key_hash(key).is_ok_and(|h| h == hash)) =>
            {
                Err(BundleError::BadSignature)
            }
            Some(hash) => Err(BundleError::UntrustedKey(hex::encode(hash))),
            None => Err(BundleError::BadSignature),
        }
    }
}

/// Refuses a bundle whose version is not newer than the installed one of the
/// same model id (different model ids never block each other).
pub fn check_upgrade(
    installed: Option<(&str, ImageVersion)>,
    candidate: &Manifest,
) -> Result<(), BundleError> {
    let candidate_version = candidate.image_version()?;
    match installed {
        Some((id, version)) if id == candidate.model_id && candidate_version <= version => {
            Err(BundleError::Downgrade {
                model_id: id.to_string(),
                installed: version.to_string(),
                candidate: candidate_version.to_string(),
            })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::manifest::tests::sample_manifest;
    use super::*;

    fn contents() -> BundleContents {
        let model = b"not really onnx".to_vec();
        let image = b"golden png".to_vec();
        let mut manifest = sample_manifest();
        manifest.model_sha256 = hex::encode(Sha256::digest(&model));
        BundleContents {
            manifest,
            model,
            golden: vec![GoldenVector {
                name: "g0".into(),
                image_sha256: hex::encode(Sha256::digest(&image)),
                input_sha256: "c".repeat(64),
                logits: vec![1.0, 2.0],
                top1: 1,
                logit_tolerance: 1e-4,
                expected_class: None,
            }],
            golden_images: vec![image],
            ood_statistics: None,
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn write_read_verify() {
        let c = contents();
        let bytes = write_bundle(&c, &key(1)).unwrap();
        let read = read_bundle(&bytes).unwrap();
        assert_eq!(read.manifest, c.manifest);
        assert_eq!(read.model, c.model.as_slice());
        assert_eq!(read.golden, c.golden);
        assert_eq!(read.golden_images, vec![c.golden_images[0].as_slice()]);
        assert_eq!(read.header.version, "1.0.0".parse().unwrap());
        read.verify(&key(1).verifying_key()).unwrap();
        let trust = [key(2).verifying_key(), key(1).verifying_key()];
        assert_eq!(read.verify_trusted(&trust).unwrap(), 1);
        assert!(matches!(
            read.verify_trusted(&trust[..1]),
            Err(BundleError::UntrustedKey(_))
        ));
    }

    #[test]
    fn a_damaged_signature_by_a_trusted_key_is_a_bad_signature_not_a_foreign_key() {
        let mut bytes = write_bundle(&contents(), &key(1)).unwrap();
        // The Ed25519 TLV is the last one: its last byte is the signature's.
        *bytes.last_mut().unwrap() ^= 0x01;
        let read = read_bundle(&bytes).unwrap();
        let trust = [key(2).verifying_key(), key(1).verifying_key()];
        assert!(matches!(
            read.verify_trusted(&trust),
            Err(BundleError::BadSignature)
        ));
        // Without the named key in the store it is still a foreign key.
        assert!(matches!(
            read.verify_trusted(&trust[..1]),
            Err(BundleError::UntrustedKey(_))
        ));
    }

    #[test]
    fn inconsistent_contents_are_not_written() {
        let mut c = contents();
        c.model.push(0);
        assert!(write_bundle(&c, &key(1)).is_err());
        let mut c = contents();
        c.golden_images.clear();
        assert!(write_bundle(&c, &key(1)).is_err());
    }

    #[test]
    fn ood_statistics_travel_with_a_matching_manifest_only() {
        let stats = vec![1u8; 2 * 4 * (2 + 2)]; // 2 classes, D = 2
        let mut c = contents();
        c.manifest.ood = Some(OodCalibration {
            method: "mahalanobis-normalised".into(),
            centroids: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
            threshold: 20.0,
            percentile: 0.995,
            training_images: 4,
            held_out_images: 2,
            gaussians: Some(OodGaussians {
                classes: 2,
                dim: 2,
                sha256: hex::encode(Sha256::digest(&stats)),
            }),
        });
        c.ood_statistics = Some(stats.clone());
        let bytes = write_bundle(&c, &key(1)).unwrap();
        assert_eq!(
            read_bundle(&bytes).unwrap().ood_statistics,
            Some(stats.as_slice())
        );
        let mut missing = c.clone();
        missing.ood_statistics = None;
        assert!(write_bundle(&missing, &key(1)).is_err());
        let mut other = c.clone();
        other.ood_statistics = Some(vec![2u8; stats.len()]);
        assert!(write_bundle(&other, &key(1)).is_err());
        let mut short = c.clone();
        short.ood_statistics = Some(stats[1..].to_vec());
        assert!(write_bundle(&short, &key(1)).is_err());
        let mut undescribed = contents();
        undescribed.ood_statistics = Some(stats);
        assert!(write_bundle(&undescribed, &key(1)).is_err());
    }

    #[test]
    fn downgrades_are_refused_per_model_id() {
        let mut m = sample_manifest();
        m.version = "1.2.0".into();
        let v = |s: &str| s.parse::<ImageVersion>().unwrap();
        check_upgrade(None, &m).unwrap();
        check_upgrade(Some(("tumorxai-demo", v("1.1.9"))), &m).unwrap();
        check_upgrade(Some(("other-model", v("9.0.0"))), &m).unwrap();
        for installed in ["1.2.0", "1.3.0"] {
            let err = check_upgrade(Some(("tumorxai-demo", v(installed))), &m).unwrap_err();
            assert!(matches!(err, BundleError::Downgrade { .. }), "{installed}");
        }
    }
}
