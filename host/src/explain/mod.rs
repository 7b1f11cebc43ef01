//! Explanations of the classifier on the workstation. EigenCAM here is the
//! host reference the device's power-iteration EigenCAM is checked against.

pub mod eigencam;
