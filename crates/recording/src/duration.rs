//! Human durations: `250ms`, `1s`, `1.5s`, `10m`, `2h`, `1h30m`.
//!
//! Used by every flag that takes a time span and by sample selectors
//! (`DIR@30s`). A unit is required: a bare `10` could mean seconds or
//! milliseconds, and guessing wrong by a factor of a thousand is worse than
//! asking.

use std::time::Duration;

/// Parses a duration: one or more `NUMBER UNIT` parts, units `ms`, `s`, `m`,
/// `h`, `d`. Returns a message saying what was expected on failure.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("expected a duration such as 1s, 250ms, 10m or 2h, found nothing".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let unit_len = rest[num_len..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len() - num_len);
        let (num, unit) = (&rest[..num_len], &rest[num_len..num_len + unit_len]);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("expected a number in duration {text:?}, found {num:?}"))?;
        let scale = match unit.trim() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" => {
                return Err(format!(
                    "duration {text:?} needs a unit: ms, s, m or h (e.g. {num}s)"
                ))
            }
            u => {
                return Err(format!(
                    "unknown unit {u:?} in duration {text:?}; use ms, s, m or h"
                ))
            }
        };
        total += n * scale;
        rest = &rest[num_len + unit_len..];
    }
    if !total.is_finite() || total > 1e10 {
        return Err(format!("duration {text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats a duration the way [`parse`] reads it, at a precision fit for
/// people: `250ms`, `4.2s`, `12m30s`, `3h05m`.
pub fn format(d: Duration) -> String {
    format_seconds(d.as_secs_f64())
}

/// [`format`] for seconds as a float (as analyses compute them): `never`
/// for an infinite or undefined time, `0s` for none, and `2.5d` past two
/// days.
pub fn format_seconds(s: f64) -> String {
    if !s.is_finite() {
        return "never".into();
    }
    if s == 0.0 {
        "0s".into()
    } else if s < 1.0 {
        format!("{}ms", (s * 1000.0).round())
    } else if s < 60.0 {
        let t = format!("{s:.1}");
        format!("{}s", t.trim_end_matches(".0"))
    } else if s < 3600.0 {
        let m = (s / 60.0).floor();
        format!("{}m{:02}s", m, (s - m * 60.0).floor())
    } else if s < 2.0 * 86400.0 {
        let h = (s / 3600.0).floor();
        format!("{}h{:02}m", h, ((s - h * 3600.0) / 60.0).floor())
    } else {
        format!("{:.1}d", s / 86400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let ok = [
            ("1s", 1000),
            ("250ms", 250),
            ("10m", 600_000),
            ("2h", 7_200_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1500),
            (" 3s ", 3000),
            ("0s", 0),
            ("1d", 86_400_000),
        ];
        for (text, ms) in ok {
            assert_eq!(parse(text).unwrap().as_millis(), ms, "{text}");
        }
        for bad in ["", "10", "1x", "s", "-1s", "1..2s", "ms5", "1e400h"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_secs(4)), "4s");
        assert_eq!(format(Duration::from_millis(4200)), "4.2s");
        assert_eq!(format(Duration::from_secs(750)), "12m30s");
        assert_eq!(format(Duration::from_secs(3 * 3600 + 300)), "3h05m");
    }
}
