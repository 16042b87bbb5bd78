//! The service's TLS certificate and key: read from the files the config names at start, and
//! again on SIGHUP, so a renewed certificate is served without a restart. A pair that does not
//! load (unreadable, not PEM, a key that is not the certificate's) is refused and the pair in use
//! kept. Connections already open keep the pair they started with.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "TLS certificate {path}: {reason}: give the certificate chain in PEM, the server's own first"
    )]
    Certificate { path: PathBuf, reason: String },
    #[error(
        "TLS key {path}: {reason}: give the certificate's private key in PEM (PKCS#8, PKCS#1 or SEC1)"
    )]
    Key { path: PathBuf, reason: String },
    #[error(
        "TLS certificate {certificate} and key {key} do not make a pair ({reason}): give the key that belongs to the certificate"
    )]
    Pair {
        certificate: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The acceptor for new connections, replaced whole when the files are read again.
pub struct Tls {
    files: TlsFiles,
    acceptor: RwLock<TlsAcceptor>,
}

impl Tls {
    /// Reads the certificate and key named in the config.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Self {
            acceptor: RwLock::new(acceptor(files)?),
            files: files.clone(),
        })
    }

    /// The acceptor for a new connection: the pair read last.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.read().expect("TLS acceptor lock").clone()
    }

    /// Reads the files again and serves the new pair to new connections; when it does not load,
    /// the pair in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = acceptor(&self.files)?;
        *self.acceptor.write().expect("TLS acceptor lock") = fresh;
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certificate_error = |reason: String| TlsError::Certificate {
        path: files.certificate.clone(),
        reason: crate::one_line(&reason),
    };
    let certificates = CertificateDer::pem_file_iter(&files.certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| certificate_error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(certificate_error("no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        reason: key_reason(e),
    })?;
    // Checks that the key belongs to the first certificate, too.
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|builder| {
        builder
            .with_no_client_auth()
            .with_single_cert(certificates, key)
    })
    .map_err(|e| TlsError::Pair {
        certificate: files.certificate.clone(),
        key: files.key.clone(),
        reason: crate::one_line(&e.to_string()),
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Why the key file did not load, without quoting it: a parser's message can hold a line of the
/// file, and in a key file that line can be part of the key.
fn key_reason(error: pem::Error) -> String {
    match error {
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => "no PEM private key in it".into(),
        _ => "not a PEM private key".into(),
    }
}
