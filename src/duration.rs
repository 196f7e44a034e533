//! Durations as a person writes them ("139 ms", "2.5 s", "11 s", "4 min 5 s"), for every
//! wait and time a log line, a progress line or a summary shows: never `139.693855ms`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
