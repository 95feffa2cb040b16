//! The functions' one HTTP and TLS setup. The AWS SDK's client and reqwest (for the
//! Qovery API) share one TLS stack (rustls 0.23 over hyper 1), one crypto provider (ring)
//! and one set of trusted roots, which is read once per sandbox.
//!
//! ring rather than aws-lc-rs (the SDK's default): it is the smaller of the two by far.
//! That gives up aws-lc's FIPS build and its hybrid post-quantum key exchange; neither is
//! required here. Going back means the `rustls-aws-lc` feature and `CryptoMode::AwsLc`
//! for the SDK, and rustls's `aws_lc_rs` provider below.

use std::sync::{Arc, LazyLock};

use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::{http_client_fn, HttpClient, SharedHttpClient};
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// The roots both clients trust: the system's store, not roots compiled in. On
/// provided.al2023 the store is the OS's CA bundle, which AWS patches with the runtime,
/// so a distrusted CA drops out without a rebuild of ours; `SSL_CERT_FILE` can point at
/// another bundle (a private CA in front of an egress proxy, say); and the bootstraps
/// stay smaller. Read once per sandbox, at init, for both clients.
static SYSTEM_ROOTS: LazyLock<Roots> = LazyLock::new(|| {
    let found = match openssl_probe::probe().cert_file {
        // The bundle file alone: it holds the whole store (on provided.al2023 and Debian
        // alike), and the hashed directory beside it repeats it one file per certificate,
        // which OpenSSL reads lazily but rustls-native-certs would read in full at start.
        Some(bundle) if std::env::var_os("SSL_CERT_DIR").is_none() => {
            rustls_native_certs::load_certs_from_paths(Some(&bundle), None)
        }
        _ => rustls_native_certs::load_native_certs(),
    };
    for error in &found.errors {
        tracing::warn!(%error, "reading the system's trusted root certificates");
    }
    Roots::from_certs(found.certs)
});

struct Roots {
    /// For reqwest's rustls configuration.
    store: Arc<RootCertStore>,
    /// The same certificates as one PEM bundle: what the SDK's `TrustStore` takes.
    pem: Vec<u8>,
}

impl Roots {
    fn from_certs(certs: Vec<CertificateDer<'static>>) -> Self {
        let mut store = RootCertStore::empty();
        let mut pem = Vec::new();
        for cert in certs {
            let base64 = aws_smithy_types::base64::encode(&cert);
            // Only what rustls accepts as a trust anchor: the SDK panics on any other.
            if store.add(cert).is_ok() {
                pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
                pem.extend_from_slice(base64.as_bytes());
                pem.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
            }
        }
        if store.is_empty() {
            tracing::error!(
                "no trusted root certificate found: every HTTPS call will fail. Set SSL_CERT_FILE to a CA bundle."
            );
        }
        Self {
            store: Arc::new(store),
            pem,
        }
    }
}

/// The HTTP client of every AWS SDK client. It also speaks plain HTTP, for local
/// emulators such as moto.
pub fn aws_http_client() -> SharedHttpClient {
    // aws-smithy-http-client builds, and drops, a whole connector (parsing every root)
    // each time an SDK client is created, so that the system store is read early: three
    // times at init here, and again for the STS client update-qovery creates on each
    // invocation. The store is read at init anyway (SYSTEM_ROOTS), so build only the
    // connector that sends requests: once per sandbox, on first use.
    http_client_fn(|settings, components| SDK_HTTP_CLIENT.http_connector(settings, components))
}

static SDK_HTTP_CLIENT: LazyLock<SharedHttpClient> = LazyLock::new(|| {
    let trust = TrustStore::empty().with_pem_certificate(SYSTEM_ROOTS.pem.as_slice());
    let tls = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context with a trust store always builds");
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls)
        .build_https()
});

/// A reqwest builder that uses the same provider and roots as the SDK.
pub fn reqwest_builder() -> reqwest::ClientBuilder {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports TLS 1.2 and 1.3")
    .with_root_certificates(SYSTEM_ROOTS.store.clone())
    .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn ca(name: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_sdk_gets_the_same_roots_as_reqwest() {
        let certs = vec![ca("first"), ca("second")];
        let roots = Roots::from_certs(certs.clone());
        assert_eq!(roots.store.len(), 2);
        let from_pem = CertificateDer::pem_slice_iter(&roots.pem)
            .collect::<Result<Vec<_>, _>>()
            .expect("the bundle is valid PEM");
        assert_eq!(from_pem, certs);
    }

    #[test]
    fn a_certificate_rustls_rejects_is_left_out() {
        let garbage = CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]);
        let roots = Roots::from_certs(vec![garbage, ca("kept")]);
        assert_eq!(roots.store.len(), 1);
        assert_eq!(CertificateDer::pem_slice_iter(&roots.pem).count(), 1);
    }
}
