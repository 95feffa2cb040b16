//! Timestamps as Step Functions wants them: RFC 3339, UTC, whole seconds
//! (a Wait state's `TimestampPath` rejects anything else).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn format(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&Rfc3339)
        .expect("a UTC time always formats as RFC 3339")
}

pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// `at` plus `seconds`, formatted.
pub fn after(at: OffsetDateTime, seconds: u64) -> String {
    format(at + time::Duration::seconds(seconds as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_whole_seconds_in_utc() {
        let at = datetime!(2026-11-26 04:00:00.123 +01:00);
        assert_eq!(format(at), "2026-11-26T03:00:00Z");
        assert_eq!(after(at, 7200), "2026-11-26T05:00:00Z");
        assert_eq!(
            parse("2026-11-26T05:00:00Z").map(format).unwrap(),
            "2026-11-26T05:00:00Z"
        );
    }
}
