//! The Qovery client never follows a redirect: a PUT carries a secret key, and reqwest
//! would send the body again to wherever a 307 or 308 points. A server that answers
//! every request with a redirect to a recording server: no byte reaches the recorder.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rotation::qovery::{QoveryApi, QoveryErrorKind};
use rotation::secret::Secret;

/// Counts every connection it accepts, and the bytes it is sent.
fn recorder() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buffer = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            if let Ok(n) = stream.read(&mut buffer) {
                counter.fetch_add(n, Ordering::SeqCst);
            }
        }
    });
    (url, received)
}

/// Answers every request with `status` and `Location: <to>/stolen`.
fn redirector(status: &'static str, to: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buffer = [0u8; 8192];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut buffer);
            let answer = format!(
                "HTTP/1.1 {status}\r\nLocation: {to}/stolen\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

#[tokio::test]
async fn a_put_answered_with_a_redirect_sends_nothing_to_where_it_points() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secret = Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    let token = Secret::new("qov_t0ken-redirect-test");
    for status in [
        "307 Temporary Redirect",
        "308 Permanent Redirect",
        "302 Found",
    ] {
        let (recorder_url, received) = recorder();
        let api = QoveryApi::new(&redirector(status, recorder_url.clone()));
        let error = api
            .put_aws_static_credentials(
                &token,
                "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                "7c9e6679-7425-40de-944b-e07fc1f90ae7",
                "aws-prod",
                "AKIAIOSFODNN7EXAMPLE",
                &secret,
            )
            .await
            .unwrap_err();
        tokio::time::sleep(Duration::from_millis(300)).await;

        // THEN the error says where it pointed, and nothing reached that place
        assert_eq!(error.kind, QoveryErrorKind::Rejected, "{status}");
        assert_eq!(error.status, Some(status[..3].parse().unwrap()));
        assert!(
            error.detail.contains(&format!("{recorder_url}/stolen")),
            "{}",
            error.detail
        );
        assert!(!error.detail.contains(secret.expose()));
        // The message points at the base URL, not at the input's ids.
        let message = error.clone().into_rotation_error("").message().to_string();
        assert!(message.contains("QOVERY_API_URL"), "{message}");
        assert!(!message.contains("execution input"), "{message}");
        assert_eq!(
            received.load(Ordering::SeqCst),
            0,
            "{status}: the recorder was reached"
        );
    }
}
