//! Typed errors of the preprocessing contract: every bad input names its problem.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum PreprocessError {
    #[error("input is empty (0 bytes)")]
    Empty,
    #[error("unsupported image format{}: expected JPEG, PNG, BMP, TIFF or DICOM", .0.as_ref().map(|f| format!(" ({f})")).unwrap_or_default())]
    UnsupportedFormat(Option<String>),
    #[error("image is truncated: {0}")]
    Truncated(String),
    #[error("image is corrupt: {0}")]
    Corrupt(String),
    #[error("image has a zero-sized dimension ({width}x{height})")]
    ZeroSized { width: u32, height: u32 },
    #[error("image is too large: {width}x{height} exceeds the limit of {max_pixels} pixels / {max_side} per side")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
        max_side: u32,
    },
    #[error("unsupported DICOM: {0}")]
    UnsupportedDicom(String),
    #[error("invalid preprocessing spec: {0}")]
    InvalidSpec(String),
}
