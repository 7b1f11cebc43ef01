//! Explanations of the classifier on the workstation: Grad-CAM, Grad-CAM++
//! and EigenCAM maps ([`cam`]), mapped onto the original slice
//! ([`project`]), and how faithful they are ([`faithfulness`]). EigenCAM
//! here is also the host reference the device's power-iteration EigenCAM is
//! checked against.

pub mod cam;
pub mod eigencam;
pub mod faithfulness;
pub mod project;
pub mod render;
pub mod report;
