//! TLS for the SSL and SASL_SSL listeners (rustls): the server certificate
//! chain and key from PEM files and, for mutual TLS, the CA whose
//! certificates clients must present.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Where the PEM files are.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("a TLS listener needs --tls-cert and --tls-key")]
    Missing,
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Read {
        what,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

impl TlsFiles {
    /// The acceptor for a TLS listener.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Err(TlsError::Missing);
        };
        let chain = read_certs("--tls-cert", cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
            what: "--tls-key",
            path: key.display().to_string(),
            reason: e.to_string(),
        })?;
        // The provider named, not guessed: with more than one compiled in
        // (the CLI's HTTP client brings ring) rustls cannot pick one.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in read_certs("--tls-client-ca", ca)? {
                    roots
                        .add(c)
                        .map_err(|e| TlsError::Config(format!("--tls-client-ca: {e}")))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| TlsError::Config(format!("--tls-client-ca: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("--tls-cert / --tls-key: {e}")))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The principal of a client that presented a certificate (mutual TLS):
/// `User:` and the certificate's subject as RFC 2253 writes it (the last
/// name component first, e.g. `User:CN=alice,OU=ml,O=acme`), which is the
/// name Kafka's default principal builder gives the same certificate.
pub fn client_principal(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let mut rdns = Vec::new();
    for rdn in parsed.subject().iter() {
        let mut parts = Vec::new();
        for attr in rdn.iter() {
            let oid = attr.attr_type();
            let key =
                match x509_parser::objects::oid2abbrev(oid, x509_parser::objects::oid_registry()) {
                    Ok(k @ ("CN" | "L" | "ST" | "O" | "OU" | "C" | "STREET" | "DC" | "UID")) => {
                        k.to_string()
                    }
                    _ => oid.to_id_string(),
                };
            let value = match attr.as_str() {
                Ok(v) => escape_dn_value(v),
                Err(_) => format!(
                    "#{}",
                    attr.attr_value()
                        .data
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ),
            };
            parts.push(format!("{key}={value}"));
        }
        rdns.push(parts.join("+"));
    }
    rdns.reverse();
    Some(format!("User:{}", rdns.join(",")))
}

/// RFC 2253's escaping of an attribute value.
fn escape_dn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        let edge_space = c == ' ' && (i == 0 || i == last);
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || edge_space
            || (i == 0 && c == '#')
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_escaping() {
        assert_eq!(escape_dn_value("alice"), "alice");
        assert_eq!(escape_dn_value("Acme, Inc."), "Acme\\, Inc.");
        assert_eq!(escape_dn_value("#1 "), "\\#1\\ ");
    }

    #[test]
    fn garbage_is_no_principal() {
        assert_eq!(
            client_principal(&CertificateDer::from(vec![1u8, 2, 3])),
            None
        );
    }
}
