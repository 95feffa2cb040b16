//! Finding a secret in text that came back from outside, in whatever form it was quoted.
//!
//! An error page may quote a request raw, JSON-escaped (`/` as `\/`, any character as
//! `\uXXXX`), URL-encoded (`%2F`, `+` for a space) or HTML-escaped (`&#x2F;`), or a mix
//! of those, and may have cut it anywhere. So the text is read through each decoding
//! (and each pair of them), and every run of at least [`PIECE`] bytes that is a piece
//! of a secret is redacted in the original text. A secret shorter than that is
//! redacted only whole.

use std::collections::HashSet;

/// The shortest piece of a secret that is redacted on its own.
pub const PIECE: usize = 12;

const REDACTED: &str = "[redacted]";

/// One byte of a decoded reading of the text, and the bytes of the original it came from.
#[derive(Debug, Clone, Copy)]
struct Unit {
    byte: u8,
    start: usize,
    end: usize,
}

type Decoder = fn(&[Unit]) -> Vec<Unit>;

const DECODERS: [Decoder; 3] = [json_unescape, percent_decode, html_unescape];

/// `text` with every piece of each secret, in any of the forms above, replaced by
/// `[redacted]`.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let secrets: Vec<&[u8]> = secrets
        .iter()
        .map(|s| s.as_bytes())
        .filter(|s| !s.is_empty())
        .collect();
    if secrets.is_empty() || text.is_empty() {
        return text.to_string();
    }
    let raw: Vec<Unit> = text
        .bytes()
        .enumerate()
        .map(|(i, byte)| Unit {
            byte,
            start: i,
            end: i + 1,
        })
        .collect();
    let mut readings = vec![raw.clone()];
    for (i, first) in DECODERS.iter().enumerate() {
        let once = first(&raw);
        for (j, second) in DECODERS.iter().enumerate() {
            if i != j {
                readings.push(second(&once));
            }
        }
        readings.push(once);
    }

    let mut hits: Vec<(usize, usize)> = Vec::new();
    for secret in secrets {
        let width = secret.len().min(PIECE);
        let pieces: HashSet<&[u8]> = secret.windows(width).collect();
        for reading in &readings {
            let bytes: Vec<u8> = reading.iter().map(|u| u.byte).collect();
            for (i, window) in bytes.windows(width).enumerate() {
                if pieces.contains(window) {
                    hits.push((reading[i].start, reading[i + width - 1].end));
                }
            }
        }
    }
    redact(text, hits)
}

/// Replaces each run of overlapping or touching ranges, widened to whole characters.
fn redact(text: &str, mut hits: Vec<(usize, usize)>) -> String {
    if hits.is_empty() {
        return text.to_string();
    }
    hits.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < hits.len() {
        let (mut start, mut end) = hits[i];
        while i + 1 < hits.len() && hits[i + 1].0 <= end {
            i += 1;
            end = end.max(hits[i].1);
        }
        i += 1;
        start = start.max(copied);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push_str(&text[copied..start]);
        out.push_str(REDACTED);
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

fn hex(units: &[Unit]) -> Option<u32> {
    let digits: String = units.iter().map(|u| u.byte as char).collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(&digits, 16).ok()
}

/// Pushes the UTF-8 bytes of `c`, each mapped to the whole escape `start..end`.
fn push_char(out: &mut Vec<Unit>, c: char, start: usize, end: usize) {
    let mut buf = [0; 4];
    for byte in c.encode_utf8(&mut buf).bytes() {
        out.push(Unit { byte, start, end });
    }
}

/// JSON string escapes: `\"`, `\\`, `\/`, `\b` .. `\t`, and `\uXXXX` (surrogate pairs too).
fn json_unescape(units: &[Unit]) -> Vec<Unit> {
    let mut out = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        let u = units[i];
        if u.byte == b'\\' && i + 1 < units.len() {
            let simple = match units[i + 1].byte {
                b @ (b'"' | b'\\' | b'/') => Some(b),
                b'b' => Some(0x08),
                b'f' => Some(0x0c),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                _ => None,
            };
            if let Some(byte) = simple {
                out.push(Unit {
                    byte,
                    start: u.start,
                    end: units[i + 1].end,
                });
                i += 2;
                continue;
            }
            let code = |at: usize| {
                (at + 6 <= units.len() && units[at].byte == b'\\' && units[at + 1].byte == b'u')
                    .then(|| hex(&units[at + 2..at + 6]))
                    .flatten()
            };
            if let Some(high) = code(i) {
                let decoded = match high {
                    0xD800..=0xDBFF => code(i + 6)
                        .filter(|low| (0xDC00..=0xDFFF).contains(low))
                        .and_then(|low| {
                            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                        })
                        .map(|c| (c, 12)),
                    _ => char::from_u32(high).map(|c| (c, 6)),
                };
                if let Some((c, len)) = decoded {
                    push_char(&mut out, c, u.start, units[i + len - 1].end);
                    i += len;
                    continue;
                }
            }
        }
        out.push(u);
        i += 1;
    }
    out
}

/// Percent-encoding, and `+` for a space as forms encode it.
fn percent_decode(units: &[Unit]) -> Vec<Unit> {
    let mut out = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        let u = units[i];
        if u.byte == b'%' && i + 2 < units.len() {
            if let Some(byte) = hex(&units[i + 1..i + 3]) {
                out.push(Unit {
                    byte: byte as u8,
                    start: u.start,
                    end: units[i + 2].end,
                });
                i += 3;
                continue;
            }
        }
        let byte = if u.byte == b'+' { b' ' } else { u.byte };
        out.push(Unit { byte, ..u });
        i += 1;
    }
    out
}

/// HTML character references: `&#47;`, `&#x2F;`, and the five named ones XML knows.
fn html_unescape(units: &[Unit]) -> Vec<Unit> {
    let mut out = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        let u = units[i];
        if u.byte == b'&' {
            let semicolon = units[i + 1..]
                .iter()
                .take(10)
                .position(|x| x.byte == b';')
                .map(|p| i + 1 + p);
            if let Some(end) = semicolon {
                let name: String = units[i + 1..end].iter().map(|x| x.byte as char).collect();
                let c = match name.as_str() {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    n => n.strip_prefix('#').and_then(|num| {
                        match num.strip_prefix(['x', 'X']) {
                            Some(h) => hex(&units[end - h.len()..end]),
                            None => num.parse().ok(),
                        }
                        .and_then(char::from_u32)
                    }),
                };
                if let Some(c) = c {
                    push_char(&mut out, c, u.start, units[end].end);
                    i = end + 1;
                    continue;
                }
            }
        }
        out.push(u);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like a secret access key: `/` and `+` are what encoders change.
    const KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn percent(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }

    /// No piece of PIECE characters of `secret` is left in `text`.
    fn assert_clean(text: &str, secret: &str) {
        let chars: Vec<char> = secret.chars().collect();
        for piece in chars.windows(PIECE.min(chars.len())) {
            let piece: String = piece.iter().collect();
            assert!(!text.contains(&piece), "{piece:?} left in {text:?}");
        }
    }

    fn check(quoted: &str) {
        let text = format!("<pre>request: {quoted}</pre> end");
        let scrubbed = scrub(&text, &[KEY]);
        assert_clean(&scrubbed, KEY);
        assert!(scrubbed.starts_with("<pre>request: "), "{scrubbed}");
        assert!(scrubbed.ends_with("</pre> end"), "{scrubbed}");
        assert!(scrubbed.contains(REDACTED), "{scrubbed}");
    }

    #[test]
    fn the_raw_secret_is_redacted() {
        check(KEY);
        assert_eq!(
            scrub(&format!("a {KEY} b {KEY}"), &[KEY]),
            "a [redacted] b [redacted]"
        );
    }

    #[test]
    fn a_piece_of_the_secret_is_redacted_wherever_it_was_cut() {
        // What a page that cut the request leaves: the start, the end, a middle piece.
        check(&KEY[..20]);
        check(&KEY[KEY.len() - 12..]);
        check(&KEY[5..17]);
        // Eleven characters are left alone: too short to tell from chance.
        let short = &KEY[3..14];
        assert_eq!(scrub(short, &[KEY]), short);
    }

    #[test]
    fn json_escaped_forms_are_redacted() {
        // serde's form, then `/` as `\/`, then every character as `\uXXXX`.
        check(serde_json::to_string(KEY).unwrap().trim_matches('"'));
        check(&KEY.replace('/', "\\/"));
        let all: String = KEY
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        check(&all);
        check(&all.to_uppercase().replace("\\U", "\\u"));
        // A secret with characters JSON must escape, and one outside the BMP.
        let odd = "quote\"back\\slash\ttab-\u{1F511}-and-more";
        let escaped = serde_json::to_string(odd).unwrap();
        let scrubbed = scrub(&format!("x {escaped} y"), &[odd]);
        assert_eq!(scrubbed, "x \"[redacted]\" y");
        let surrogates = "-\\ud83d\\udd11-and-more";
        assert_clean(
            &scrub(&format!("tab{surrogates}"), &[odd]),
            "tab-\u{1F511}-and-more",
        );
    }

    #[test]
    fn url_encoded_forms_are_redacted() {
        check(&percent(KEY));
        check(&percent(KEY).replace("%2F", "%2f").replace("%2B", "%2b"));
        // A form body: `+` stands for a space in the secret.
        let spaced = "correct horse battery staple";
        let scrubbed = scrub(&format!("p={}&q=1", spaced.replace(' ', "+")), &[spaced]);
        assert_eq!(scrubbed, "p=[redacted]&q=1");
        // JSON in a query string, and a query string in JSON.
        check(&percent(&format!(
            "{{\"k\":\"{}\"}}",
            KEY.replace('/', "\\/")
        )));
        check(&percent(KEY).replace('%', "\\u0025"));
    }

    #[test]
    fn a_secret_quoted_through_two_different_encodings_is_redacted() {
        // Every 12 bytes of this secret hold a `/`, so a reading that undoes only one of
        // the two encodings never shows a whole piece of it: only the pair does.
        let secret = "abcdefghi/jklmnopqr/stuvwxyz0/123456789/ABCDEFGHI";
        // JSON in a query string: `\/` URL-encoded.
        let json_in_query = percent(&secret.replace('/', "\\/"));
        assert_eq!(
            scrub(&format!("q={json_in_query}&x=1"), &[secret]),
            "q=[redacted]&x=1"
        );
        // A query string in JSON: `%2F` with its `%` JSON-escaped.
        let query_in_json = percent(secret).replace('%', "\\u0025");
        assert_eq!(
            scrub(&format!("{{\"q\":\"{query_in_json}\"}}"), &[secret]),
            "{\"q\":\"[redacted]\"}"
        );
    }

    #[test]
    fn a_piece_that_starts_or_ends_inside_a_character_takes_the_whole_character() {
        // `é` is C3 A9: `©` (C2 A9) shares its last byte, `è` (C3 A8) its first, so a
        // piece of these secrets can match from the middle of a character of the text.
        assert_eq!(scrub("©ABCDEFGHIJK.", &["xéABCDEFGHIJK"]), "[redacted].");
        assert_eq!(scrub(".ABCDEFGHIJKè", &["ABCDEFGHIJKé"]), ".[redacted]");
    }

    #[test]
    fn html_escaped_forms_are_redacted() {
        check(&KEY.replace('/', "&#x2F;").replace('+', "&#43;"));
        let amp = "a&b<c>d\"e'f-long-enough";
        let escaped = amp
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&apos;");
        assert_eq!(scrub(&escaped, &[amp]), REDACTED);
    }

    #[test]
    fn several_secrets_and_other_text_survive() {
        let token = "qov_t0ken-that-must-never-leak";
        let text = format!("Token {token} sent {KEY}; id AKIAEXAMPLE é ok");
        assert_eq!(
            scrub(&text, &[token, KEY]),
            "Token [redacted] sent [redacted]; id AKIAEXAMPLE é ok"
        );
        // Adjacent secrets merge into one redaction.
        assert_eq!(scrub(&format!("{token}{KEY}"), &[token, KEY]), REDACTED);
        // A short secret is redacted only whole; an empty one changes nothing.
        assert_eq!(
            scrub("pw=hunter2, hunter", &["hunter2"]),
            "pw=[redacted], hunter"
        );
        assert_eq!(scrub("text", &[""]), "text");
        // Multi-byte characters around a hit stay whole.
        let text = format!("é{}é", &KEY[..15]);
        assert_eq!(scrub(&text, &[KEY]), "é[redacted]é");
    }
}
