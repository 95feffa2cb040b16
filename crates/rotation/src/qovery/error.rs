//! Why a Qovery call failed, and what of Qovery's answer an error may quote.

use reqwest::StatusCode;
use serde_json::Value;

use crate::error::RotationError;
use crate::secret::{scrub_all, Secret};

/// Why a Qovery call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QoveryErrorKind {
    /// 401 or 403: the token is wrong, expired, or lacks the permission.
    Unauthorized,
    /// 5xx, 429 or a network failure: worth retrying.
    Unavailable,
    /// Another 4xx, or a body that does not match the spec.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QoveryError {
    pub kind: QoveryErrorKind,
    /// e.g. `PUT /organization/{id}/aws/credentials/{id}`.
    pub operation: String,
    pub status: Option<u16>,
    /// Qovery's `detail` or `message`, or the body (never of a call that sent a
    /// secret); scrubbed of secrets, then cut.
    pub detail: String,
    pub retry_after_seconds: Option<u64>,
}

impl QoveryError {
    /// `Qovery answered 400 to <operation>: <detail>`, for a message of its own.
    pub fn describe(&self) -> String {
        let status = self.status.map(|s| format!(" {s}")).unwrap_or_default();
        format!(
            "Qovery answered{status} to {}: {}",
            self.operation, self.detail
        )
    }

    /// The named error, with the step's `context` (which keys are live, what to do next).
    pub fn into_rotation_error(self, context: &str) -> RotationError {
        let status = self.status.map(|s| format!(" {s}")).unwrap_or_default();
        let what = format!(
            "Qovery answered{status} to {}: {}.",
            self.operation, self.detail
        );
        let error = match self.kind {
            QoveryErrorKind::Unauthorized => RotationError::QoveryUnauthorized(format!(
                "{what} The Qovery API token was refused: check that the token secret holds a valid organization API token with admin rights on this organization."
            )),
            QoveryErrorKind::Unavailable => {
                let retry = self
                    .retry_after_seconds
                    .map(|s| format!(" Qovery asked to retry after {s} s."))
                    .unwrap_or_default();
                RotationError::QoveryUnavailable(format!(
                    "{what}{retry} This is usually temporary and the state machine retries it."
                ))
            }
            // A redirect's detail already says what to check (QOVERY_API_URL).
            QoveryErrorKind::Rejected if self.status.is_some_and(|s| (300..400).contains(&s)) => {
                RotationError::QoveryRejected(what)
            }
            QoveryErrorKind::Rejected => RotationError::QoveryRejected(format!(
                "{what} Check the organization, credentials and cluster ids in the execution input."
            )),
        };
        error.with_context(context)
    }
}

pub(super) fn classify(status: StatusCode) -> QoveryErrorKind {
    match status.as_u16() {
        401 | 403 => QoveryErrorKind::Unauthorized,
        429 => QoveryErrorKind::Unavailable,
        s if s >= 500 => QoveryErrorKind::Unavailable,
        _ => QoveryErrorKind::Rejected,
    }
}

/// How many characters of Qovery's answer an error quotes.
const MAX_QUOTED_CHARS: usize = 300;

/// What an error says of an error body: Qovery's `detail` or `message` (which its
/// clients read), else the body itself. Scrubbed of `secrets` before it is cut: a cut
/// could leave a piece of a secret that no longer matches. A call that sent a secret
/// (`quote_body` false) quotes only `detail` or `message`, never the body: a page that
/// quotes the request is the likeliest place for the secret to come back.
pub(super) fn error_detail(body: &str, quote_body: bool, secrets: &[&Secret]) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
    };
    let fields: &[&str] = if quote_body {
        &["detail", "message", "error"]
    } else {
        &["detail", "message"]
    };
    let quote = |text: &str| cut(&scrub_all(text.trim(), secrets), MAX_QUOTED_CHARS);
    if let Some(text) = fields.iter().find_map(|name| field(name)) {
        return quote(text);
    }
    if body.trim().is_empty() {
        "(empty body)".to_string()
    } else if quote_body {
        quote(body)
    } else if parsed.is_some() {
        "(a JSON body without detail or message, not quoted)".to_string()
    } else {
        "(a non-JSON body, not quoted)".to_string()
    }
}

/// The first `max` characters of `text`, with `…` when some were left out.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const TOKEN: &str = "qov_t0ken-that-must-never-leak-8c1f";

    fn secrets() -> [Secret; 2] {
        [Secret::new(TOKEN), Secret::new(KEY)]
    }

    fn detail(body: &str, quote_body: bool) -> String {
        let [token, key] = secrets();
        error_detail(body, quote_body, &[&token, &key])
    }

    /// No 12-character piece of either secret is in `text`.
    fn assert_clean(text: &str) {
        for secret in [KEY, TOKEN] {
            for start in 0..=secret.len() - 12 {
                let piece = &secret[start..start + 12];
                assert!(!text.contains(piece), "{piece:?} left in {text:?}");
            }
        }
    }

    #[test]
    fn error_detail_prefers_detail_then_message() {
        assert_eq!(
            detail(r#"{"status":400,"detail":"bad name"}"#, true),
            "bad name"
        );
        assert_eq!(detail(r#"{"message":"nope","error":"x"}"#, true), "nope");
        assert_eq!(detail(r#"{"error":"Bad Request"}"#, true), "Bad Request");
        assert_eq!(detail("plain", true), "plain");
        assert_eq!(detail(" \n", true), "(empty body)");
        assert_eq!(detail("", false), "(empty body)");
    }

    #[test]
    fn a_body_is_scrubbed_before_it_is_cut() {
        // With the key 20 characters before the cut, cutting first and then scrubbing
        // would leave its first 20 characters, which no longer match the whole key.
        let field = r#"{"secret_access_key":""#;
        for key_at in [MAX_QUOTED_CHARS - 20, MAX_QUOTED_CHARS - 12, 30] {
            let prefix = "x".repeat(key_at - field.len());
            let body = format!("{prefix}{field}{KEY}\"}} Token {TOKEN}");
            let quoted = detail(&body, true);
            assert_clean(&quoted);
            assert!(
                quoted.starts_with(&format!("{prefix}{field}[redac")),
                "{quoted}"
            );
            assert!(quoted.chars().count() <= MAX_QUOTED_CHARS + 1, "{quoted}");
        }
        let long = "é".repeat(400);
        assert_eq!(detail(&long, true), format!("{}…", "é".repeat(300)));
    }

    #[test]
    fn a_secret_across_the_cut_is_scrubbed_before_the_cut() {
        // Fewer than PIECE characters of the key before the cut: cut first, they would
        // no longer match any piece of the key, and would be quoted as they are.
        let field = r#"{"secret_access_key":""#;
        for before_cut in 1..crate::secret::PIECE {
            let key_at = MAX_QUOTED_CHARS - before_cut;
            let prefix = "x".repeat(key_at - field.len());
            let body = format!("{prefix}{field}{KEY}\"}}");
            let quoted = detail(&body, true);
            let at_the_cut = &quoted[key_at..];
            assert!(
                !at_the_cut.starts_with(&KEY[..before_cut]),
                "{before_cut} characters of the key quoted: {quoted}"
            );
            let redacted = "[redacted]";
            assert!(
                at_the_cut.starts_with(&redacted[..before_cut.min(redacted.len())]),
                "{quoted}"
            );
            assert!(quoted.ends_with('…'), "{quoted}");
        }
    }

    #[test]
    fn every_quoted_form_is_scrubbed() {
        let escaped = KEY.replace('/', "\\/");
        let encoded = KEY.replace('/', "%2F").replace('+', "%2B");
        let unicode: String = KEY
            .chars()
            .map(|c| format!("\\u{:04X}", c as u32))
            .collect();
        for quoted in [
            format!("<pre>{{\"secret_access_key\":\"{escaped}\"}}</pre>"),
            format!("GET /x?secret_access_key={encoded}&token={TOKEN}"),
            format!("{{\"echo\":\"{unicode}\"}}"),
            json!({"detail": format!("bad key {KEY}")}).to_string(),
            json!({"message": format!("bad token {}", &TOKEN[..15])}).to_string(),
        ] {
            assert_clean(&detail(&quoted, true));
            assert_clean(&detail(&quoted, false));
        }
    }

    #[test]
    fn a_call_that_sent_a_secret_quotes_only_detail_or_message() {
        let page =
            format!("<html><body><pre>{{\"secret_access_key\":\"{KEY}\"}}</pre></body></html>");
        assert_eq!(detail(&page, false), "(a non-JSON body, not quoted)");
        assert_eq!(
            detail(r#"{"status":502,"error":"Bad Gateway","echo":"x"}"#, false),
            "(a JSON body without detail or message, not quoted)"
        );
        let answer =
            json!({"status": 400, "message": format!("secret_access_key {KEY} is invalid")});
        assert_eq!(
            detail(&answer.to_string(), false),
            "secret_access_key [redacted] is invalid"
        );
    }
}
