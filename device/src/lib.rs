//! TumorXAI scanner-side runtime: the shared preprocessing contract, tract
//! inference and EigenCAM.

pub mod eigencam;
pub mod input;
pub mod runtime;
