//! A value that must never be printed: a secret access key or the Qovery token.

use std::fmt;

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

    /// `text` with every occurrence of this secret replaced. Used on text that comes
    /// back from outside (an error body may echo the request).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "[redacted]")
        }
    }
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
