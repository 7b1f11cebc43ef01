//! What the workstation (host) and the scanner-side box (device) must agree on,
//! bit for bit: the preprocessing contract, the class list and the signed
//! model bundle format.
//!
//! This crate has no libtorch, no tract and no file or port I/O: it works on
//! bytes and slices, so it builds for `aarch64-unknown-linux-gnu` unchanged and
//! both sides call exactly the same code.

pub mod bundle;
pub mod classes;
pub mod decode;
pub mod dicom;
pub mod error;
pub mod integrity;
pub mod logits;
pub mod ood;
pub mod plausibility;
pub mod preprocess;
pub mod resize;
pub mod smp;
pub mod spec;

pub use classes::{ClassInfo, Family, Sequence, CLASS_NAMES};
pub use decode::{decode_luminance, decode_slice, DecodeLimits, DecodedSlice, Luminance};
pub use error::PreprocessError;
pub use preprocess::{
    input_geometry, input_plane, normalize_plane, preprocess_bytes, preprocess_luminance,
    InputGeometry, Preprocessed,
};
pub use spec::{AspectPolicy, BrainCrop, PreprocessSpec, ResizeFilter};
