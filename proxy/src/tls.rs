//! TLS client settings (rustls with the `ring` provider; no aws-lc, no cmake).
//!
//! One entry point, [`client_config`], shared by the Kubernetes API client
//! (`source::kube`) and the outbound clients ([`outbound`]: `https://` backends, `jwksUri`
//! and `functionUri`, trusting Mozilla's roots plus `--ca-file`). PEM helpers parse
//! what kubeconfig files, service-account mounts and `--ca-file` hold.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, OnceLock};

/// Why TLS settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM block could not be parsed.
    #[error("{what}: {message}")]
    Pem {
        /// What was being parsed (e.g. "certificate-authority").
        what: String,
        /// Parser message.
        message: String,
    },
    /// rustls refused the settings (bad key, no usable CA, ...).
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What a client trusts and presents.
#[derive(Debug, Default)]
pub struct TlsOptions {
    /// Trusted CA certificates. Empty, no `bundled_roots` and not `insecure_skip_verify`:
    /// nothing is trusted.
    pub roots: Vec<CertificateDer<'static>>,
    /// Trust Mozilla's roots (`webpki-root-certs`) as well.
    pub bundled_roots: bool,
    /// Client certificate chain and its key (mutual TLS).
    pub client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Accept any server certificate (kubeconfig `insecure-skip-tls-verify`). Tests only.
    pub insecure_skip_verify: bool,
    /// ALPN protocols to offer (e.g. `b"http/1.1"`).
    pub alpn: Vec<Vec<u8>>,
}

static OUTBOUND: OnceLock<Arc<ClientConfig>> = OnceLock::new();

/// Sets what [`outbound`] trusts: Mozilla's roots plus `extra` (the `--ca-file` bundle).
/// Called once at startup, before the first outbound call; a second call is an error.
pub fn init_outbound(extra: Vec<CertificateDer<'static>>) -> Result<(), TlsError> {
    let config = outbound_config(extra)?;
    OUTBOUND
        .set(Arc::new(config))
        .map_err(|_| TlsError::Rustls(rustls::Error::General("outbound TLS set twice".into())))
}

/// The TLS settings of outbound `https://` calls (backends, authorizer key sets and
/// functions): Mozilla's roots and the `--ca-file` roots. No ALPN here: the
/// hyper-rustls connector sets it (`enable_http1`) and refuses a preset list.
pub fn outbound() -> Arc<ClientConfig> {
    OUTBOUND
        .get_or_init(|| Arc::new(outbound_config(Vec::new()).expect("the bundled roots are valid")))
        .clone()
}

/// A connector for [`outbound`] calls: `http://` as is, `https://` with the outbound trust
/// roots (HTTP/1.1); `connect_timeout` bounds the TCP connect.
pub fn outbound_connector(
    connect_timeout: std::time::Duration,
) -> hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*outbound()).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

fn outbound_config(extra: Vec<CertificateDer<'static>>) -> Result<ClientConfig, TlsError> {
    client_config(TlsOptions {
        roots: extra,
        bundled_roots: true,
        ..Default::default()
    })
}

/// The rustls crypto provider every Portico TLS client uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a rustls client config from `opts` (TLS 1.2 and 1.3, ring provider).
pub fn client_config(opts: TlsOptions) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if opts.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        if opts.bundled_roots {
            // Mozilla's set: a certificate webpki cannot use is skipped, not fatal.
            roots.add_parsable_certificates(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS
                    .iter()
                    .map(|c| c.clone().into_owned()),
            );
        }
        for cert in opts.roots {
            roots.add(cert)?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match opts.client_auth {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = opts.alpn;
    Ok(config)
}

/// Every certificate in a PEM bundle (at least one).
pub fn parse_certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.to_string(),
            message: "no CERTIFICATE block".to_string(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#1, PKCS#8 or SEC1) in a PEM document.
pub fn parse_key(what: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what: what.to_string(),
        message: e.to_string(),
    })
}

/// `insecure-skip-tls-verify`: accepts any certificate but still checks handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
    fn empty_options_build_and_garbage_pem_is_refused() {
        client_config(TlsOptions::default()).unwrap();
        client_config(TlsOptions {
            insecure_skip_verify: true,
            alpn: vec![b"http/1.1".to_vec()],
            ..Default::default()
        })
        .unwrap();
        let outbound = outbound();
        assert!(outbound.alpn_protocols.is_empty());
        assert!(parse_certs("ca", b"not pem").is_err());
        assert!(parse_key("key", b"not pem").is_err());
    }
}
