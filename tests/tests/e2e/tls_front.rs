//! A TLS front for plain test servers (https:// authorizer URLs and backends).

use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};

/// A TLS front for a plain test server: a fresh CA and a certificate for 127.0.0.1; after the
/// handshake each connection is relayed to `to`. [`TlsFront::close_connections`] closes the
/// open ones, as a backend's idle timeout would close a pooled one, when the test says so.
pub struct TlsFront {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    ca_file: tempfile::NamedTempFile,
    close: tokio::sync::watch::Sender<u64>,
    open: Arc<AtomicUsize>,
}

impl TlsFront {
    /// Starts one in front of `to`.
    pub async fn start(to: std::net::SocketAddr) -> TlsFront {
        use std::io::Write as _;
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portico e2e CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (close, _) = tokio::sync::watch::channel(0u64);
        let open = Arc::new(AtomicUsize::new(0));
        let (closing, counted) = (close.clone(), open.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, open) = (acceptor.clone(), counted.clone());
                let mut closing = closing.subscribe();
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let relay = async {
                        let Ok(mut tls) = acceptor.accept(stream).await else {
                            return;
                        };
                        let Ok(mut plain) = tokio::net::TcpStream::connect(to).await else {
                            return;
                        };
                        let relay = tokio::io::copy_bidirectional(&mut tls, &mut plain);
                        let told = tokio::select! {
                            _ = relay => false,
                            _ = closing.changed() => true,
                        };
                        if told {
                            // A clean TLS close (close_notify, then FIN), as a server's idle
                            // timeout does.
                            use tokio::io::AsyncWriteExt as _;
                            let _ = tls.shutdown().await;
                        }
                    };
                    relay.await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        let mut ca_file = tempfile::NamedTempFile::new().unwrap();
        ca_file.write_all(ca.pem().as_bytes()).unwrap();
        TlsFront {
            addr,
            ca_file,
            close,
            open,
        }
    }

    /// Closes every connection open now (cleanly: close_notify, then FIN) and returns once
    /// they are closed (bounded).
    pub async fn close_connections(&self) {
        self.close.send_modify(|generation| *generation += 1);
        portico_e2e::eventually(
            "the TLS front closed its connections",
            std::time::Duration::from_secs(30),
            || async { (self.open.load(Ordering::SeqCst) == 0).then_some(()) },
        )
        .await;
    }

    /// The CA certificate (PEM) to trust it.
    pub fn ca_path(&self) -> &str {
        self.ca_file.path().to_str().unwrap()
    }
}
