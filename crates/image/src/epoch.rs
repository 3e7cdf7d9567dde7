//! Build time: `SOURCE_DATE_EPOCH` and its RFC 3339 form.

use crate::error::{Error, Result};

/// Parse `SOURCE_DATE_EPOCH`: whole seconds since 1970, not negative.
pub fn parse(v: Option<&str>) -> Result<i64> {
    let Some(v) = v else { return Ok(0) };
    let t = v.trim();
    let ok = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    match t.parse::<i64>() {
        Ok(n) if ok && chrono::DateTime::from_timestamp(n, 0).is_some() => Ok(n),
        _ => Err(Error::Usage(format!(
            "SOURCE_DATE_EPOCH={v:?} is not a number of seconds since 1970-01-01 (e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct))"
        ))),
    }
}

/// RFC 3339 form of a timestamp (`1970-01-01T00:00:00Z`).
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
