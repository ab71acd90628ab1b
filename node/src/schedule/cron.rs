//! Cron lines and slot arithmetic. A line is standard crontab syntax read by `croner`: five
//! fields (minute hour day-of-month month day-of-week, 0 = Sunday), an optional leading seconds
//! field, or a nickname (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`).
//!
//! Slots are evaluated in the node's **local time zone** (what `crontab` users expect: `0 3 * *
//! *` is 03:00 on the machine's wall clock) and returned as UTC instants. Daylight-saving
//! transitions follow croner's (Vixie-cron's) rules: in a spring-forward gap a fixed-time slot
//! runs at the first instant after the gap and interval slots inside the gap do not exist; in a
//! fall-back overlap a fixed-time slot runs once (the first pass) and interval slots run on both
//! passes. A slot is identified by its UTC Unix second, which is unique even in an overlap.

use chrono::{DateTime, Local, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A cron line that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad cron line `{line}`: {reason}")]
pub struct CronLineError {
    pub line: String,
    pub reason: String,
}

/// A parsed cron line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronLine {
    text: String,
    cron: Cron,
}

/// The slots that came due in an interval `(after, until]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    /// How many slots, counted up to [`Due::COUNT_CAP`].
    pub count: u64,
}

impl Due {
    /// Counting stops here: after long downtime an every-second line has millions of slots.
    pub const COUNT_CAP: u64 = 10_000;
}

impl CronLine {
    pub fn parse(text: &str) -> Result<Self, CronLineError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(text.trim()).map_err(|e| CronLineError {
            line: text.to_string(),
            reason: e.to_string(),
        })?;
        Ok(CronLine {
            text: text.trim().to_string(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first slot strictly after `after`, in the time zone `after` carries.
    pub fn next_after_in<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.cron.find_next_occurrence(after, false).ok()
    }

    /// The last slot at or before `at`, in the time zone `at` carries.
    pub fn latest_at_or_before_in<Tz: TimeZone>(&self, at: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.cron.find_previous_occurrence(at, true).ok()
    }

    /// The first slot strictly after `after`, evaluated in the node's local time zone.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after_in(&after.with_timezone(&Local))
            .map(|t| t.with_timezone(&Utc))
    }

    /// The slots in `(after, until]` (local time zone), or `None` when there are none.
    pub fn due(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<Due> {
        self.due_in(&after.with_timezone(&Local), &until.with_timezone(&Local))
    }

    /// [`CronLine::due`] in the time zone the arguments carry.
    pub fn due_in<Tz: TimeZone>(&self, after: &DateTime<Tz>, until: &DateTime<Tz>) -> Option<Due> {
        let first = self.next_after_in(after)?;
        if first > *until {
            return None;
        }
        let last = self
            .latest_at_or_before_in(until)
            .filter(|l| *l >= first)
            .unwrap_or_else(|| first.clone());
        let mut count = 1;
        let mut cursor = first.clone();
        while count < Due::COUNT_CAP {
            match self.next_after_in(&cursor) {
                Some(next) if next <= *until => {
                    count += 1;
                    cursor = next;
                }
                _ => break,
            }
        }
        Some(Due {
            first: first.with_timezone(&Utc),
            last: last.with_timezone(&Utc),
            count,
        })
    }

    /// The time from `slot` to the slot after it (local time zone); `None` when there is none.
    pub fn period_after(&self, slot: DateTime<Utc>) -> Option<std::time::Duration> {
        let next = self.next_after(slot)?;
        (next - slot).to_std().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime};

    /// A stand-in for Europe/Berlin in 2026 (UTC+1, UTC+2 from 29 March 01:00 UTC to 25 October
    /// 01:00 UTC), so DST behaviour is tested without depending on the machine's zone files.
    #[derive(Debug, Clone, Copy)]
    struct Berlin2026;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    impl Berlin2026 {
        fn summer_starts() -> NaiveDateTime {
            utc(2026, 3, 29, 1, 0, 0).naive_utc()
        }
        fn summer_ends() -> NaiveDateTime {
            utc(2026, 10, 25, 1, 0, 0).naive_utc()
        }
        fn winter() -> FixedOffset {
            FixedOffset::east_opt(3600).unwrap()
        }
        fn summer() -> FixedOffset {
            FixedOffset::east_opt(7200).unwrap()
        }
        fn at(&self, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Berlin2026> {
            self.with_ymd_and_hms(y, mo, d, h, mi, 0)
                .earliest()
                .unwrap()
        }
    }

    impl TimeZone for Berlin2026 {
        type Offset = FixedOffset;

        fn from_offset(_: &FixedOffset) -> Self {
            Berlin2026
        }

        fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<FixedOffset> {
            self.offset_from_local_datetime(&local.and_hms_opt(12, 0, 0).unwrap())
        }

        fn offset_from_local_datetime(
            &self,
            local: &NaiveDateTime,
        ) -> MappedLocalTime<FixedOffset> {
            let as_winter = *local - Self::winter();
            let as_summer = *local - Self::summer();
            let winter_valid =
                as_winter < Self::summer_starts() || as_winter >= Self::summer_ends();
            let summer_valid =
                as_summer >= Self::summer_starts() && as_summer < Self::summer_ends();
            match (winter_valid, summer_valid) {
                (true, true) => MappedLocalTime::Ambiguous(Self::summer(), Self::winter()),
                (true, false) => MappedLocalTime::Single(Self::winter()),
                (false, true) => MappedLocalTime::Single(Self::summer()),
                (false, false) => MappedLocalTime::None,
            }
        }

        fn offset_from_utc_date(&self, utc: &NaiveDate) -> FixedOffset {
            self.offset_from_utc_datetime(&utc.and_hms_opt(0, 0, 0).unwrap())
        }

        fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> FixedOffset {
            if *utc >= Self::summer_starts() && *utc < Self::summer_ends() {
                Self::summer()
            } else {
                Self::winter()
            }
        }
    }

    fn slots(line: &str, from: DateTime<Berlin2026>, n: usize) -> Vec<String> {
        let cron = CronLine::parse(line).unwrap();
        let mut out = Vec::new();
        let mut at = from;
        for _ in 0..n {
            at = cron.next_after_in(&at).unwrap();
            out.push(at.to_rfc3339());
        }
        out
    }

    #[test]
    fn five_fields_seconds_and_nicknames_parse_and_garbage_does_not() {
        for line in [
            "*/5 * * * *",
            "0 3 * * 1-5",
            "*/2 * * * * *",
            "@daily",
            "@hourly",
            "0 0 1 JAN *",
        ] {
            assert!(CronLine::parse(line).is_ok(), "{line}");
        }
        for line in ["", "* * *", "61 * * * *", "every day", "* * * * * * 2026"] {
            let error = CronLine::parse(line).unwrap_err();
            assert!(error.to_string().starts_with("bad cron line"), "{error}");
        }
    }

    #[test]
    fn slots_fall_on_the_right_minutes() {
        let zone = Berlin2026;
        assert_eq!(
            slots("*/15 * * * *", zone.at(2026, 1, 10, 9, 7), 3),
            [
                "2026-01-10T09:15:00+01:00",
                "2026-01-10T09:30:00+01:00",
                "2026-01-10T09:45:00+01:00"
            ]
        );
        // Day of week 0 is Sunday; 10 January 2026 is a Saturday.
        assert_eq!(
            slots("30 6 * * 0", zone.at(2026, 1, 10, 9, 7), 2),
            ["2026-01-11T06:30:00+01:00", "2026-01-18T06:30:00+01:00"]
        );
    }

    #[test]
    fn a_daily_slot_in_the_spring_forward_gap_runs_once_right_after_the_gap() {
        // 29 March 2026: 02:00 local jumps to 03:00, so 02:30 does not exist that day.
        assert_eq!(
            slots("30 2 * * *", Berlin2026.at(2026, 3, 28, 12, 0), 3),
            [
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00"
            ]
        );
    }

    #[test]
    fn a_daily_slot_in_the_fall_back_overlap_runs_once_and_hourly_ones_run_on_both_passes() {
        // 25 October 2026: 03:00 local falls back to 02:00, so 02:30 happens twice.
        assert_eq!(
            slots("30 2 * * *", Berlin2026.at(2026, 10, 24, 12, 0), 2),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
        assert_eq!(
            slots("30 * * * *", Berlin2026.at(2026, 10, 25, 1, 0), 3),
            [
                "2026-10-25T01:30:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:30:00+01:00"
            ]
        );
    }

    #[test]
    fn due_counts_the_slots_of_an_interval_and_names_the_first_and_last() {
        let cron = CronLine::parse("*/5 * * * *").unwrap();
        let due = cron
            .due(utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 30, 0))
            .unwrap();
        assert_eq!(due.first, utc(2026, 1, 1, 0, 5, 0));
        assert_eq!(due.last, utc(2026, 1, 1, 0, 30, 0));
        assert_eq!(due.count, 6);
        assert_eq!(
            cron.due(utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 4, 59)),
            None
        );
        let every_second = CronLine::parse("* * * * * *").unwrap();
        let long = every_second
            .due(utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 3, 0, 0, 0))
            .unwrap();
        assert_eq!(long.count, Due::COUNT_CAP);
        assert_eq!(long.last, utc(2026, 1, 3, 0, 0, 0));
    }
}
