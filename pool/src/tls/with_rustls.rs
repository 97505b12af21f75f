//! The rustls side of `tls`: the client configuration, the certificate checks, the tracked
//! TLS stream and what a failed handshake means.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::{RootCert, SslMode, TlsOptions};
use crate::session::{Session, Tracked};

/// A connector's TLS: the rustls configuration its options make, built once.
#[derive(Clone)]
pub(crate) struct Setup {
    make: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Setup {
    /// Encryption as `mode` asks, the certificate unchecked; `None` for `disable`.
    pub fn unchecked(mode: SslMode) -> Option<Self> {
        let options = TlsOptions {
            mode: mode.min(SslMode::Require),
            ..Default::default()
        };
        Self::build(&options, None).ok().flatten()
    }

    /// Reads the certificate files `options` name; `None` for `sslmode=disable`.
    pub fn new(options: &TlsOptions) -> Result<Option<Self>, String> {
        if options.mode == SslMode::Disable {
            return Ok(None);
        }
        let roots = match &options.root_cert {
            Some(RootCert::System) => Some(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
            Some(RootCert::File(path)) => Some(read_roots(path)?),
            None => match super::default_root_cert() {
                Some(path) => Some(read_roots(&path)?),
                None if options.mode.verifies() => {
                    return Err(format!(
                        "sslmode={} checks the server's certificate against a CA, and none is given: set sslrootcert=/path/to/ca.pem (or sslrootcert=system for the public CAs), or use sslmode=require to encrypt without checking; ~/.postgresql/root.crt does not exist",
                        options.mode.as_str()
                    ));
                }
                None => None,
            },
        };
        Self::build(options, roots)
    }

    fn build(
        options: &TlsOptions,
        roots: Option<rustls::RootCertStore>,
    ) -> Result<Option<Self>, String> {
        if options.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = match roots {
            Some(roots) => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("sslrootcert: no usable CA certificate ({e})"))?,
            ),
            None => None,
        };
        let verifier = Arc::new(Verifier {
            inner,
            check_name: options.mode == SslMode::VerifyFull,
            provider: Arc::clone(&provider),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&options.client_cert, &options.client_key) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("sslcert `{}` could not be read: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("sslkey `{}` could not be read: {e}", key.display()))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    format!("sslcert and sslkey do not make a client certificate: {e}")
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Some(Self {
            make: tokio_postgres_rustls::MakeRustlsConnect::new(config),
        }))
    }

    /// The TLS connector for one host (its name is what `verify-full` checks).
    pub fn for_host<S>(
        &self,
        host: &str,
    ) -> Result<<tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        MakeTlsConnect::<S>::make_tls_connect(&mut self.make.clone(), host)
            .map_err(|e| format!("`{host}` is not a host name TLS can check: {e}"))
    }
}

fn read_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("sslrootcert `{}` could not be read: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "sslrootcert `{}` holds no CA certificate in PEM form",
            path.display()
        ));
    }
    Ok(roots)
}

/// Checks the chain when there are roots to check it against, and the name when
/// `verify-full` asks; handshake signatures are always checked.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connector whose stream is tracked above the encryption (see `session`).
pub(crate) struct TrackedTls<T> {
    pub inner: T,
    pub session: Arc<Session>,
}

impl<S, T> TlsConnect<S> for TrackedTls<T>
where
    T: TlsConnect<S>,
    T::Future: Send + 'static,
    T::Stream: Send,
{
    type Stream = Tracked<T::Stream>;
    type Error = T::Error;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Stream, Self::Error>> + Send + 'static>>;

    fn connect(self, stream: S) -> Self::Future {
        let session = self.session;
        let handshake = self.inner.connect(stream);
        Box::pin(async move { Ok(Tracked::new(handshake.await?, session)) })
    }
}

impl<S: TlsStream + Unpin> TlsStream for Tracked<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.get_ref().channel_binding()
    }
}

/// What a failed handshake's error means to the person who configured it, when it is a
/// TLS error; `None` otherwise.
pub(crate) fn failure_message(e: &tokio_postgres::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut tls_kind = false;
    while let Some(err) = source {
        if let Some(pg) = err.downcast_ref::<tokio_postgres::Error>() {
            tls_kind |= pg.to_string().starts_with("error performing TLS handshake");
        }
        let rustls_error = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = rustls_error {
            return Some(explain(r));
        }
        source = err.source();
    }
    tls_kind.then(|| match std::error::Error::source(e) {
        Some(cause) if cause.to_string().contains("does not support TLS") => {
            "the server does not offer TLS, and sslmode asks for it: turn ssl on in the server, or use sslmode=prefer".to_string()
        }
        Some(cause) => format!("TLS handshake failed: {cause}"),
        None => "TLS handshake failed".to_string(),
    })
}

fn explain(e: &rustls::Error) -> String {
    use CertificateError::*;
    let what = match e {
        rustls::Error::InvalidCertificate(UnknownIssuer | BadSignature) => {
            "the server's certificate is not signed by a CA in sslrootcert: check that sslrootcert is the CA that issued the server's certificate"
        }
        rustls::Error::InvalidCertificate(NotValidForName | NotValidForNameContext { .. }) => {
            "the server's certificate does not name the host connected to: connect by a name the certificate lists, or use sslmode=verify-ca to check the CA only"
        }
        rustls::Error::InvalidCertificate(Expired | ExpiredContext { .. }) => {
            "the server's certificate has expired: renew it on the server"
        }
        rustls::Error::InvalidCertificate(NotValidYet | NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet: check the clocks"
        }
        rustls::Error::InvalidCertificate(_) => "the server's certificate was refused",
        _ => "the TLS handshake failed",
    };
    format!("{what} ({e})")
}
