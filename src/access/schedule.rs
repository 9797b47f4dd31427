//! Weekly schedules for visitor and vendor passes, e.g. `mon-fri 07:00-19:00; sat 09:00-13:00`.
//! Times are the site's local time; a window whose end is before its start runs past midnight.

use chrono::{Datelike, Timelike};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    days: u8, // bit 0 = Monday
    start: u16,
    end: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    windows: Vec<Window>,
    text: String,
}

/// Longest schedule text (bytes).
pub const MAX_SCHEDULE_BYTES: usize = 200;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day(s: &str) -> Result<u8, String> {
    DAYS.iter()
        .position(|d| *d == s)
        .map(|p| p as u8)
        .ok_or_else(|| format!("unknown day {s:?} (use mon, tue, wed, thu, fri, sat, sun)"))
}

fn minutes(s: &str) -> Result<u16, String> {
    let (h, m) = s.split_once(':').ok_or_else(|| format!("time {s:?} is not HH:MM"))?;
    let h: u16 = h.parse().map_err(|_| format!("time {s:?} is not HH:MM"))?;
    let m: u16 = m.parse().map_err(|_| format!("time {s:?} is not HH:MM"))?;
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(format!("time {s:?} is out of range"));
    }
    Ok(h * 60 + m)
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_SCHEDULE_BYTES {
            return Err(format!(
                "schedule is {} bytes long; at most {MAX_SCHEDULE_BYTES} are allowed (a few windows, e.g. \"mon-fri 07:00-19:00; sat 09:00-13:00\")",
                text.len()
            ));
        }
        let mut windows = Vec::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (days_s, times_s) = part
                .split_once(' ')
                .ok_or_else(|| format!("{part:?}: expected \"DAYS HH:MM-HH:MM\", e.g. \"mon-fri 07:00-19:00\""))?;
            let mut days = 0u8;
            for d in days_s.to_ascii_lowercase().split(',') {
                match d.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (day(a)?, day(b)?);
                        let mut i = a;
                        loop {
                            days |= 1 << i;
                            if i == b {
                                break;
                            }
                            i = (i + 1) % 7;
                        }
                    }
                    None => days |= 1 << day(d)?,
                }
            }
            let (s, e) = times_s
                .trim()
                .split_once('-')
                .ok_or_else(|| format!("{part:?}: times must be HH:MM-HH:MM"))?;
            windows.push(Window {
                days,
                start: minutes(s.trim())?,
                end: minutes(e.trim())?,
            });
        }
        if windows.is_empty() {
            return Err("schedule is empty".into());
        }
        Ok(Self {
            windows,
            text: text.trim().to_string(),
        })
    }

    /// Whether a local date-time falls inside the schedule.
    pub fn allows<T: Datelike + Timelike>(&self, local: &T) -> bool {
        let wd = local.weekday().num_days_from_monday() as u8;
        let yesterday = (wd + 6) % 7;
        let m = (local.hour() * 60 + local.minute()) as u16;
        self.windows.iter().any(|w| {
            if w.start < w.end {
                w.days & (1 << wd) != 0 && m >= w.start && m < w.end
            } else {
                (w.days & (1 << wd) != 0 && m >= w.start) || (w.days & (1 << yesterday) != 0 && m < w.end)
            }
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> chrono::NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .expect("date")
    }

    #[test]
    fn weekdays_and_hours() {
        let s = Schedule::parse("mon-fri 07:00-19:00; sat 09:00-13:00").expect("parse");
        assert!(s.allows(&at(2026, 11, 23, 7, 0))); // Monday
        assert!(!s.allows(&at(2026, 11, 23, 19, 0)));
        assert!(s.allows(&at(2026, 11, 28, 12, 59))); // Saturday
        assert!(!s.allows(&at(2026, 11, 29, 10, 0))); // Sunday
    }

    #[test]
    fn overnight_windows_wrap() {
        let s = Schedule::parse("fri 22:00-06:00").expect("parse");
        assert!(s.allows(&at(2026, 11, 27, 23, 0))); // Friday night
        assert!(s.allows(&at(2026, 11, 28, 5, 59))); // Saturday early
        assert!(!s.allows(&at(2026, 11, 28, 6, 0)));
        assert!(!s.allows(&at(2026, 11, 26, 23, 0))); // Thursday
    }

    #[test]
    fn bad_schedules_say_why() {
        assert!(Schedule::parse("funday 07:00-09:00")
            .unwrap_err()
            .contains("unknown day"));
        assert!(Schedule::parse("mon 7-9").unwrap_err().contains("HH:MM"));
        assert!(Schedule::parse("mon 25:00-26:00").unwrap_err().contains("out of range"));
    }
}
