//! TumorXAI scanner-side runtime: signed bundle loading, the shared
//! preprocessing contract, tract inference, EigenCAM, the triage policy and
//! the overlay, the inbox service and the DICOM storage receiver.

pub mod audit;
pub mod dicom_access;
pub mod dicom_scp;
pub mod dimse;
pub mod display;
pub mod eigencam;
pub mod evaluation;
pub mod failpoint;
pub mod fold;
pub mod forms;
pub mod input;
pub mod loader;
pub mod ordered;
pub mod outgoing;
pub mod overlay;
pub mod pipeline;
pub mod profile;
pub mod results;
pub mod runtime;
pub mod service;
pub mod smp_server;
pub mod smp_transport;
pub mod state;
pub mod tls;
pub mod triage;
pub mod upgrade;
