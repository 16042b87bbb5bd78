//! Test certificates (made with openssl) and a TLS client that says which certificate it was shown.

use std::path::{Path, PathBuf};

/// A test CA in `dir`: `ca.pem` (returned) and `ca-key.pem`.
pub fn test_ca(dir: &Path) -> PathBuf {
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &EC_KEY,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=test CA",
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    dir.join("ca.pem")
}

/// A certificate for localhost and 127.0.0.1 signed by the [`test_ca`] in `dir`:
/// `<name>.pem` and `<name>-key.pem` (returned in that order).
pub fn localhost_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key, csr) = (
        format!("{name}.pem"),
        format!("{name}-key.pem"),
        format!("{name}.csr"),
    );
    let subject = ["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr];
    openssl(dir, &[&["req"][..], &EC_KEY, &subject].concat());
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            &cert,
        ],
    );
    (dir.join(cert), dir.join(key))
}

/// A new P-256 key, unencrypted.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn openssl(dir: &Path, args: &[&str]) {
    let made = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// The first certificate in the PEM file `path` (the server's own, in a chain).
fn certificate_der(path: &Path) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path).unwrap()
}

/// The fingerprint (SHA-256, hex) of the certificate in the PEM file `path`.
pub fn fingerprint_of(path: &Path) -> String {
    super::sha256_hex(certificate_der(path))
}

/// `GET path` over TLS to `address` (host:port) as "localhost", trusting only `ca`: the
/// fingerprint of the certificate the server showed, and the HTTP status.
pub fn tls_get(address: &str, ca: &Path, path: &str) -> (String, u16) {
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate_der(ca)).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connection =
        rustls::ClientConnection::new(std::sync::Arc::new(config), "localhost".try_into().unwrap())
            .unwrap();
    let socket = std::net::TcpStream::connect(address).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    // The answer counts, not how the server closed.
    let _ = stream.read_to_end(&mut answer);
    let served = super::sha256_hex(&stream.conn.peer_certificates().expect("a TLS handshake")[0]);
    let status = String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (served, status)
}
