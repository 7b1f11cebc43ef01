//! DICOM TLS (PS3.15 B.9, "Secure Transport Connection Profiles") settings
//! from PEM files: the receiver's server configuration and the result
//! sender's client configuration, both on rustls with the ring provider.
//!
//! - `--tls-cert` / `--tls-key`: this device's certificate chain and key
//!   (the receiver's identity; the sender's client certificate: a
//!   certificate for both roles carries both extended key usages).
//! - `--tls-ca`: the certificate authorities the destinations' (PACS)
//!   certificates must chain to (required for a `tls://` destination).
//! - `--dicom-tls-client-ca`: callers of the receiver must present a
//!   certificate these authorities issued (mutual TLS); without it, the
//!   receiver asks for none. Separate from `--tls-ca`: scanners and PACS
//!   often have different issuers.
//!
//! Certificates are checked by webpki: a wrong CA, an expired certificate
//! or a name mismatch ends the handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("TLS settings: {0}")]
    Config(String),
}

/// The PEM files of the TLS options.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Trusted for the destinations the sender connects to.
    pub ca: Option<PathBuf>,
    /// Trusted for the receiver's callers (client certificates required).
    pub client_ca: Option<PathBuf>,
}

/// ring rather than rustls' aws-lc-rs default: ring builds with a C
/// compiler alone (no cmake), on the bare first-command machine and for
/// aarch64. rustls 0.23.48 deprecates ring's provider for lacking
/// post-quantum key exchange, which the DICOM TLS profiles (BCP 195 TLS
/// 1.2/1.3 suites) do not ask for.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path)? {
        store.add(cert).map_err(|e| file_error(path, e))?;
    }
    Ok(Arc::new(store))
}

impl TlsFiles {
    /// The certificate and key, both or neither.
    fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some((certificates(cert)?, private_key(key)?))),
            (None, None) => Ok(None),
            _ => Err(TlsError::Config(
                "--tls-cert and --tls-key go together".into(),
            )),
        }
    }

    /// The receiver's configuration: needs the certificate and key; with
    /// a client CA, client certificates it issued are required.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let (certs, key) = self.identity()?.ok_or_else(|| {
            TlsError::Config("a TLS receiver needs --tls-cert and --tls-key".into())
        })?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))?;
        Ok(Arc::new(config))
    }

    /// The sender's configuration: trusts `--tls-ca`; presents the
    /// certificate and key when given.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let ca = self.ca.as_deref().ok_or_else(|| {
            TlsError::Config("sending over TLS needs --tls-ca (the destination's CA)".into())
        })?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots(ca)?);
        let config = match self.identity()? {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_unpaired_files_are_explained() {
        let none = TlsFiles::default();
        assert!(none
            .server_config()
            .unwrap_err()
            .to_string()
            .contains("--tls-cert"));
        assert!(none
            .client_config()
            .unwrap_err()
            .to_string()
            .contains("--tls-ca"));
        let half = TlsFiles {
            cert: Some("/nonexistent/cert.pem".into()),
            ..TlsFiles::default()
        };
        assert!(half
            .server_config()
            .unwrap_err()
            .to_string()
            .contains("go together"));
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let files = TlsFiles {
            ca: Some(empty.clone()),
            ..TlsFiles::default()
        };
        let err = files.client_config().unwrap_err().to_string();
        assert!(
            err.contains("empty.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
    }
}
