//! Times of day in configuration files: UTC offsets (`+08:00`), times (`20:00`) and daily
//! windows that may cross midnight (`20:00-07:00`). The specialists' duty hours at the
//! gateway and the clinic's off-hours window for routine bulk both read them here.

/// `+08:00`, `-05:30`, `UTC+8`, or `Z`/`UTC` → seconds east of UTC.
pub fn parse_utc_offset(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let t = t.strip_prefix("UTC").unwrap_or(t);
    if t.is_empty() || t == "Z" {
        return Ok(0);
    }
    let err = || format!("utc_offset '{text}' is not an offset like +08:00");
    let (sign, rest) = match t.as_bytes()[0] {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return Err(err()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i64 = h.parse().map_err(|_| err())?;
    let m: i64 = m.parse().map_err(|_| err())?;
    if h > 14 || m > 59 {
        return Err(err());
    }
    Ok(sign * (h * 3600 + m * 60))
}

/// `HH:MM` → minutes after midnight (`24:00` is the end of the day).
pub fn parse_time_of_day(hm: &str) -> Result<u16, String> {
    let not_hm = || format!("'{hm}' is not HH:MM");
    let (h, m) = hm.trim().split_once(':').ok_or_else(not_hm)?;
    let (h, m): (u16, u16) = (
        h.parse().map_err(|_| not_hm())?,
        m.parse().map_err(|_| not_hm())?,
    );
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(format!("'{hm}' is not a time of day"));
    }
    Ok(h * 60 + m)
}

/// A window of each day, from `start` to `end` minutes after midnight; it crosses midnight
/// when `end` is earlier than `start` (`20:00-07:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyWindow {
    pub start: u16,
    pub end: u16,
}

impl DailyWindow {
    /// `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (start, end) = text
            .trim()
            .split_once('-')
            .ok_or_else(|| format!("'{text}' is not a range like 20:00-07:00"))?;
        let (start, end) = (parse_time_of_day(start)?, parse_time_of_day(end)?);
        if start == end {
            return Err(format!("'{text}' starts and ends at the same time"));
        }
        Ok(Self { start, end })
    }

    /// Whether `minute` (after midnight) is inside the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl std::fmt::Display for DailyWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}–{}", hm(self.start), hm(self.end))
    }
}

/// Minutes after local midnight at `unix_secs`, for a place `offset_secs` east of UTC.
pub fn local_minute(unix_secs: i64, offset_secs: i64) -> u16 {
    ((unix_secs + offset_secs).rem_euclid(86_400) / 60) as u16
}

/// `+08:00` for `offset_secs` east of UTC.
pub fn format_offset(offset_secs: i64) -> String {
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let a = offset_secs.abs();
    format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_as_people_write_them() {
        assert_eq!(parse_utc_offset("+08:00"), Ok(8 * 3600));
        assert_eq!(parse_utc_offset("UTC+8"), Ok(8 * 3600));
        assert_eq!(parse_utc_offset("-05:30"), Ok(-(5 * 3600 + 1800)));
        assert_eq!(parse_utc_offset("Z"), Ok(0));
        assert!(parse_utc_offset("Asia/Shanghai").is_err());
        assert_eq!(format_offset(8 * 3600), "+08:00");
        assert_eq!(format_offset(-(5 * 3600 + 1800)), "-05:30");
    }

    #[test]
    fn a_window_may_cross_midnight() {
        let night = DailyWindow::parse("20:00-07:00").unwrap();
        assert!(night.contains(20 * 60));
        assert!(night.contains(23 * 60 + 59));
        assert!(night.contains(0));
        assert!(night.contains(6 * 60 + 59));
        assert!(!night.contains(7 * 60));
        assert!(!night.contains(12 * 60));
        assert_eq!(night.to_string(), "20:00–07:00");
        let lunch = DailyWindow::parse("12:00-13:30").unwrap();
        assert!(lunch.contains(12 * 60 + 10) && !lunch.contains(13 * 60 + 30));
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        assert_eq!(
            DailyWindow::parse("8pm-7am"),
            Err("'8pm' is not HH:MM".into())
        );
        assert_eq!(
            DailyWindow::parse("20:00"),
            Err("'20:00' is not a range like 20:00-07:00".into())
        );
        assert_eq!(
            DailyWindow::parse("25:00-07:00"),
            Err("'25:00' is not a time of day".into())
        );
        assert!(DailyWindow::parse("07:00-07:00").is_err());
    }

    #[test]
    fn the_local_minute_follows_the_offset() {
        // 2026-12-04 12:00 UTC is 20:00 in China.
        let noon_utc = 1_796_385_600;
        assert_eq!(local_minute(noon_utc, 0), 12 * 60);
        assert_eq!(local_minute(noon_utc, 8 * 3600), 20 * 60);
        assert_eq!(local_minute(noon_utc, -13 * 3600), 23 * 60);
    }
}
