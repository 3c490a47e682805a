//! TLS to PostgreSQL, chosen by the URL's `sslmode` and `sslrootcert` as libpq reads them.
//!
//! tokio-postgres knows only `disable`, `prefer` and `require` and never verifies a
//! certificate itself, so the two parameters are taken out of the URL here and turned into
//! a rustls configuration:
//!
//! | `sslmode` | encrypted | certificate checked |
//! | --- | --- | --- |
//! | absent, `disable` | no | — |
//! | `prefer` | when the server offers it | no |
//! | `require` | yes | no; with `sslrootcert`, as `verify-ca` (libpq does the same) |
//! | `verify-ca` | yes | chain up to a trusted root |
//! | `verify-full` | yes | chain, and the host name (or IP) in the URL |
//!
//! The trusted roots are the PEM file `sslrootcert` (or `TODO_DATABASE_CA_FILE`) names, or
//! the bundled Mozilla set (webpki-roots) when neither is given or it is `system`. Unlike libpq, an absent `sslmode` means
//! plain TCP, as before TLS was supported: a database inside the cluster or VPC needs no
//! change, and one that requires TLS fails loudly rather than silently.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Result, StoreError};

/// A connection setting with its TLS: what the pool, the leads and the listener open.
#[derive(Clone)]
pub(super) struct Connector {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

impl Connector {
    /// Reads `url`, taking its TLS parameters out (see the module's table).
    /// `TODO_DATABASE_CA_FILE` stands for an `sslrootcert` the URL does not give, so the CA
    /// can come from a mounted file while the URL stays in a secret.
    pub fn from_url(url: &str) -> Result<Connector> {
        let mut split = split_url(url)?;
        if split.root_cert.is_none() {
            split.root_cert = std::env::var_os("TODO_DATABASE_CA_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from);
        }
        let mut config: tokio_postgres::Config = split.url.parse().map_err(|e| {
            StoreError::Unsupported(format!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))
        })?;
        let tls = connector(&mut config, &split)?;
        Ok(Connector { config, tls })
    }

    /// One connection outside the pool.
    pub async fn connect(
        &self,
    ) -> std::result::Result<(Client, Connection<Socket, TlsStream>), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(value: &str) -> Result<Mode> {
        Ok(match value {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(StoreError::Unsupported(format!(
                    "DATABASE_URL: sslmode must be disable, prefer, require, verify-ca or verify-full (got {other:?})"
                )));
            }
        })
    }

    /// What tokio-postgres is told: whether to ask for TLS and whether it is a must.
    fn ssl_mode(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// The TLS parameters of a URL, and the URL without them.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Split {
    pub url: String,
    pub mode: Mode,
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query (the other pairs
/// are kept as written). A key=value connection string is left to tokio-postgres, which
/// then decides the mode (`disable`/`prefer`/`require`, never verified).
pub(super) fn split_url(url: &str) -> Result<Split> {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
        return Ok(Split {
            url: url.to_owned(),
            mode: Mode::Disable,
            root_cert: None,
        });
    };
    let mut mode = None;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let decoded: Vec<(String, String)> = serde_urlencoded::from_str(pair).map_err(|e| {
            StoreError::Unsupported(format!("DATABASE_URL has a malformed query pair: {e}"))
        })?;
        match decoded.first().map(|(k, v)| (k.as_str(), v.as_str())) {
            Some(("sslmode", value)) => mode = Some(Mode::parse(value)?),
            Some(("sslrootcert", path)) => root_cert = Some(PathBuf::from(path)),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(Split {
        url,
        mode: mode.unwrap_or(Mode::Disable),
        root_cert,
    })
}

/// Sets the mode on `config` and builds the connector every connection of the store uses.
pub(super) fn connector(
    config: &mut tokio_postgres::Config,
    split: &Split,
) -> Result<MakeRustlsConnect> {
    // A key=value string may have set a mode of its own: keep it then (unverified).
    let mode = if split.mode == Mode::Disable && config.get_ssl_mode() == SslMode::Require {
        Mode::Require
    } else if split.mode == Mode::Disable && config.get_ssl_mode() == SslMode::Prefer {
        // tokio-postgres' default, not a choice: plain TCP.
        config.ssl_mode(SslMode::Disable);
        Mode::Disable
    } else {
        split.mode
    };
    config.ssl_mode(mode.ssl_mode());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // libpq: `require` with a root certificate given checks the chain, as `verify-ca`.
    let verify_chain = matches!(mode, Mode::VerifyCa | Mode::VerifyFull)
        || (mode == Mode::Require && split.root_cert.is_some());
    let verifier: Arc<dyn ServerCertVerifier> = if verify_chain {
        let roots = Arc::new(roots(split.root_cert.as_ref())?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .build()
            .map_err(|e| StoreError::Unsupported(format!("PostgreSQL TLS roots: {e}")))?;
        if mode == Mode::VerifyFull {
            webpki
        } else {
            Arc::new(ChainOnly(webpki))
        }
    } else {
        Arc::new(Unverified(provider.clone()))
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Unsupported(format!("PostgreSQL TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(tls))
}

/// The trusted roots: the certificates of `file`, or the bundled Mozilla set.
fn roots(file: Option<&PathBuf>) -> Result<RootCertStore> {
    let Some(file) = file.filter(|f| f.as_os_str() != "system") else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let unreadable = |e: &dyn std::fmt::Display| {
        StoreError::Unsupported(format!(
            "DATABASE_URL: sslrootcert {} cannot be read as PEM certificates: {e}",
            file.display()
        ))
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(file).map_err(|e| unreadable(&e))? {
        store
            .add(cert.map_err(|e| unreadable(&e))?)
            .map_err(|e| unreadable(&e))?;
    }
    if store.is_empty() {
        return Err(unreadable(&"no certificate in the file"));
    }
    Ok(store)
}

/// `verify-ca`: the chain must lead to a trusted root; the name in it is not compared.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last, so a name error means the
        // chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require`: encrypted, but any certificate is taken (libpq's meaning). The
/// handshake's signatures are still checked, so the peer holds the certificate's key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_leave_the_url_and_the_rest_stays_as_written() {
        let split = split_url(
            "postgres://u:p@db:5432/todo?connect_timeout=3&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&options=-c%20search_path%3Dtodo",
        )
        .unwrap();
        assert_eq!(
            split.url,
            "postgres://u:p@db:5432/todo?connect_timeout=3&options=-c%20search_path%3Dtodo"
        );
        assert_eq!(split.mode, Mode::VerifyFull);
        assert_eq!(split.root_cert, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn no_sslmode_is_plain_and_system_roots_are_the_bundled_ones() {
        let split = split_url("postgresql://db/todo").unwrap();
        assert_eq!((split.mode, split.root_cert), (Mode::Disable, None));
        let split = split_url("postgres://db/todo?sslmode=require&sslrootcert=system").unwrap();
        assert_eq!(split.url, "postgres://db/todo");
        assert_eq!(split.mode, Mode::Require);
        assert_eq!(
            roots(split.root_cert.as_ref()).unwrap().len(),
            webpki_roots::TLS_SERVER_ROOTS.len()
        );
    }

    #[test]
    fn an_unknown_sslmode_is_refused_by_name() {
        let err = split_url("postgres://db/todo?sslmode=allow").unwrap_err();
        assert!(err.to_string().contains("sslmode must be"), "{err}");
    }

    #[test]
    fn a_missing_or_empty_root_file_is_refused_at_start() {
        let mut config: tokio_postgres::Config = "postgres://db/todo".parse().unwrap();
        let split =
            split_url("postgres://db/todo?sslmode=verify-ca&sslrootcert=/nonexistent.pem").unwrap();
        let err = connector(&mut config, &split).err().expect("missing file");
        assert!(err.to_string().contains("/nonexistent.pem"), "{err}");
        let empty = tempfile::NamedTempFile::new().unwrap();
        let split = Split {
            url: "postgres://db/todo".into(),
            mode: Mode::VerifyFull,
            root_cert: Some(empty.path().to_owned()),
        };
        let err = connector(&mut config, &split).err().expect("empty file");
        assert!(err.to_string().contains("no certificate"), "{err}");
    }

    #[test]
    fn the_driver_is_told_to_insist_on_tls_for_every_verifying_mode() {
        for (query, expected) in [
            ("", SslMode::Disable),
            ("?sslmode=disable", SslMode::Disable),
            ("?sslmode=prefer", SslMode::Prefer),
            ("?sslmode=require", SslMode::Require),
            ("?sslmode=verify-ca", SslMode::Require),
            ("?sslmode=verify-full", SslMode::Require),
        ] {
            let split = split_url(&format!("postgres://db/todo{query}")).unwrap();
            let mut config: tokio_postgres::Config = split.url.parse().unwrap();
            connector(&mut config, &split).unwrap();
            assert_eq!(config.get_ssl_mode(), expected, "{query}");
        }
    }
}
