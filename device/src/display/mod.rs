//! What the radiographer sees on the small panel beside the scanner, drawn
//! with embedded-graphics against any RGB565 `DrawTarget` (320×240, 480×320
//! and other landscape sizes): idle, processing, result (slice with the CAM
//! overlay, colour-coded flag banner, top-3 bars, model and time), model
//! update progress, and error screens — each with a permanent "Not for
//! diagnostic use" line.
//!
//! Backends: [`framebuffer::FrameBuffer`] (in memory, PNG snapshots) and
//! [`fbdev`] (Linux `/dev/fbN`).

pub mod fbdev;
pub mod framebuffer;
mod screens;

pub use screens::{draw, Layout, BAR, BAR_TRACK};

use image::RgbImage;

use crate::triage::Flag;

/// The model line shown in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLabel {
    pub name: String,
    pub version: String,
}

/// One class and its probability, for the top-3 bars.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub label: String,
    pub probability: f32,
}

/// A triage result as shown on the panel.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultView {
    /// The original slice with the EigenCAM overlay.
    pub overlay: RgbImage,
    pub flag: Flag,
    /// Second banner line for REVIEW (why); `None` shows "low confidence".
    pub review_detail: Option<String>,
    pub top3: Vec<Bar>,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    Idle,
    Processing {
        file: String,
    },
    Result(ResultView),
    /// A model update in progress, `done` of `total` bytes.
    Flashing {
        stage: String,
        done: u64,
        total: u64,
    },
    Error {
        message: String,
    },
}

/// Everything on the panel: the screen plus the header's model and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub screen: Screen,
    pub model: Option<ModelLabel>,
    /// Wall-clock time as shown, e.g. "2026-11-27 14:03 UTC".
    pub time: String,
}

/// Short label of a class name of the real layout ("Glioma T1C+"); other
/// names are kept as they are.
pub fn short_class_label(name: &str) -> String {
    match tumorxai_shared::ClassInfo::parse(name) {
        Some(info) => format!("{} {}", info.family.label(), info.sequence.label()),
        None => name.to_string(),
    }
}
