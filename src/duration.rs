//! Durations as a person writes them ("139 ms", "2.5 s", "11 s", "4 min 5 s"), for every
//! wait and time a log line, a progress line or a summary shows: never `139.693855ms`; and
//! read as a person writes them (`3d`, `36h`, `2d12h`, `90min`) for flags such as
//! `--prune-after`.

use std::time::Duration;

/// `d` rounded to what a reader needs: milliseconds under a second, a tenth of a second
/// under ten seconds, whole seconds under a minute, then minutes and seconds, then hours
/// and minutes.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let secs = d.as_secs_f64();
    if secs < 9.95 {
        let tenths = format!("{secs:.1}");
        return format!("{} s", tenths.trim_end_matches(".0"));
    }
    let whole = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    match whole {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => match s % 60 {
            0 => format!("{} min", s / 60),
            rest => format!("{} min {rest} s", s / 60),
        },
        s => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            rest => format!("{} h {rest} min", s / 3600),
        },
    }
}

/// Reads a duration written as whole numbers each followed by a unit — `s`, `m` or `min`,
/// `h`, `d`, `w` — one after another (`2d12h`, `90m`, `0s`), or a bare `0`. Spaces are not
/// allowed: the value is one flag or option word.
pub fn parse(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration (write e.g. 3d, 12h or 90m)".to_owned());
    }
    // Nothing is nothing in any unit.
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "duration {text:?}: expected a number at {rest:?} (write e.g. 3d, 12h or 90m)"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration {text:?}: {} is too big", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let seconds = match &rest[..unit_len] {
            "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "" => {
                return Err(format!(
                    "duration {text:?}: {number} has no unit (s, m, h, d or w)"
                ));
            }
            other => {
                return Err(format!(
                    "duration {text:?}: unknown unit {other:?} (s, m, h, d or w)"
                ));
            }
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_as_a_person_writes_them() {
        assert_eq!(parse("3d"), Ok(Duration::from_secs(3 * 86_400)));
        assert_eq!(parse("2d12h"), Ok(Duration::from_secs(60 * 3600)));
        assert_eq!(parse("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("90min"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert!(parse("00").unwrap_err().contains("no unit"));
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("3").unwrap_err().contains("no unit"));
        assert!(parse("3y").unwrap_err().contains("unknown unit \"y\""));
        assert!(parse("d3").unwrap_err().contains("expected a number"));
        assert!(parse("3 d").unwrap_err().contains("no unit"));
        assert!(
            parse("99999999999999999999d")
                .unwrap_err()
                .contains("too big")
        );
        assert!(parse("999999999999999w").unwrap_err().contains("too long"));
    }

    #[test]
    fn durations_read_as_a_person_writes_them() {
        assert_eq!(human(Duration::from_nanos(139_693_855)), "139 ms");
        assert_eq!(human(Duration::ZERO), "0 ms");
        assert_eq!(human(Duration::from_millis(1000)), "1 s");
        assert_eq!(human(Duration::from_millis(2540)), "2.5 s");
        assert_eq!(human(Duration::from_millis(10_700)), "11 s");
        assert_eq!(human(Duration::from_secs(60)), "1 min");
        assert_eq!(human(Duration::from_secs(245)), "4 min 5 s");
        assert_eq!(human(Duration::from_secs(7200)), "2 h");
        assert_eq!(human(Duration::from_secs(3900)), "1 h 5 min");
    }
}
