//! Both HTTP clients over real TLS: the AWS SDK's and the Qovery one (reqwest) trust the
//! roots `SSL_CERT_FILE` names, and nothing else. Everything else in the tests speaks
//! plain HTTP to moto and the fake Qovery.
//!
//! One test in its own binary: the roots are read once per process, so `SSL_CERT_FILE`
//! must be set before anything builds a client.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_sts::error::SdkError;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const CALLER_IDENTITY: &str = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/tls-test</Arn><UserId>AIDATLSTEST</UserId>
<Account>123456789012</Account></GetCallerIdentityResult>
<ResponseMetadata><RequestId>c2c2e1a4-0000-0000-0000-000000000000</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"#;

/// A CA, and a server certificate for `localhost` that it signed.
struct Pki {
    ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: PrivatePkcs8KeyDer<'static>,
}

fn pki(ca_name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert: server.der().clone(),
        server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
    }
}

/// An HTTPS server on localhost that answers every request with `body`. Returns its URL.
fn serve(pki: &Pki, body: &'static str) -> String {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![pki.server_cert.clone()],
        PrivateKeyDer::Pkcs8(pki.server_key.clone_key()),
    )
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let connection = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let mut reader = BufReader::new(&mut tls);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    // A client that rejects the certificate ends the handshake here.
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut request_body = vec![0; length];
                std::io::Read::read_exact(&mut reader, &mut request_body).unwrap();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes());
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    format!("https://localhost:{port}")
}

fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIATLSTEST",
            "secret",
            None,
            None,
            "test",
        )))
        .http_client(rotation::http::aws_http_client())
        .build()
}

async fn caller_arn(endpoint: &str) -> Result<String, String> {
    let client = aws_sdk_sts::Client::new(&sdk_config(endpoint));
    match client.get_caller_identity().send().await {
        Ok(output) => Ok(output.arn().unwrap_or_default().to_string()),
        Err(SdkError::DispatchFailure(e)) => Err(format!("dispatch failure: {e:?}")),
        Err(e) => panic!("expected a TLS failure, got {e:?}"),
    }
}

async fn qovery_get(url: &str) -> Result<String, reqwest::Error> {
    let client = rotation::http::reqwest_builder().build().unwrap();
    client.get(url).send().await?.text().await
}

#[tokio::test]
async fn both_clients_trust_the_system_roots_and_only_them() {
    let trusted = pki("qovery-key-rotator test CA");
    let stranger = pki("some other CA");
    let dir = std::env::temp_dir().join(format!("qkr-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("ca.pem");
    std::fs::write(&bundle, &trusted.ca_pem).unwrap();
    std::env::set_var("SSL_CERT_FILE", Path::new(&bundle));
    std::env::remove_var("SSL_CERT_DIR");

    let good = serve(&trusted, CALLER_IDENTITY);
    assert_eq!(
        caller_arn(&good).await.unwrap(),
        "arn:aws:iam::123456789012:user/tls-test"
    );
    assert_eq!(qovery_get(&good).await.unwrap(), CALLER_IDENTITY);

    // A server whose CA is not in the bundle is refused by both.
    let bad = serve(&stranger, CALLER_IDENTITY);
    let sdk = caller_arn(&bad).await.unwrap_err();
    assert!(sdk.contains("UnknownIssuer"), "{sdk}");
    let qovery = format!("{:?}", qovery_get(&bad).await.unwrap_err());
    assert!(qovery.contains("UnknownIssuer"), "{qovery}");

    let _ = std::fs::remove_dir_all(&dir);
}
