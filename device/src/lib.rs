//! TumorXAI scanner-side runtime: the shared preprocessing contract, tract
//! inference, EigenCAM, the triage policy and the overlay.

pub mod eigencam;
pub mod input;
pub mod overlay;
pub mod pipeline;
pub mod runtime;
pub mod triage;
