//! A value that must never be printed: a secret access key or the Qovery token; and
//! how to take every trace of one out of text that came back from outside.

mod scrub;

use std::fmt;

pub use scrub::PIECE;

/// Holds a secret string. `Debug` redacts it, and there is deliberately no `Display`
/// and no `Serialize`, so a secret cannot reach a log line, an error or a step's
/// output by accident. Call `expose` only where the value is sent to its one consumer.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every trace of this secret replaced; see [`scrub_all`].
    pub fn scrub(&self, text: &str) -> String {
        scrub_all(text, &[self])
    }
}

/// `text` with every trace of each secret replaced by `[redacted]`: the secret whole,
/// JSON-escaped, URL-encoded or HTML-escaped, and any piece of it of [`PIECE`]
/// characters or more. For text that comes back from outside: an error page may quote
/// the request, in any of those forms, and cut it anywhere. Scrub before cutting.
pub fn scrub_all(text: &str, secrets: &[&Secret]) -> String {
    let values: Vec<&str> = secrets.iter().map(|s| s.expose()).collect();
    scrub::scrub(text, &values)
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG");
        assert!(!format!("{secret:?}").contains("wJalr"));
        assert_eq!(
            secret.scrub("echo: wJalrXUtnFEMI/K7MDENG!"),
            "echo: [redacted]!"
        );
    }
}
