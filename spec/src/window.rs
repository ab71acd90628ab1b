//! Change windows (`kind: Window`): when a host takes changes. A window is recurring (a cron
//! line for each start plus a `duration`) or one-off (`start`, `end`), in an IANA time zone
//! compiled into the binary (`chrono-tz`), so judging one reads no file. `deny` windows close
//! the host while they are open; once any `allow` window targets a host, the host takes changes
//! only while one of them is open. The caller passes the time: this module reads no clock.

use crate::FleetModel;
use crate::model::{WindowAction, WindowDocument, WindowSpec};
use crate::selector::{HostFacts, Selector};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A window's times, parsed.
#[derive(Debug, Clone)]
pub enum When {
    Recurring {
        cron: Box<Cron>,
        duration: chrono::Duration,
    },
    Range {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
}

/// A window that parsed: its zone and its times.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub zone: Tz,
    pub when: When,
}

/// What is wrong with a window's times, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowError {
    /// `spec.cron`, `spec.timeZone`, … (`spec` for a missing combination).
    pub field: &'static str,
    pub message: String,
    pub expected: &'static str,
}

fn error(field: &'static str, message: String, expected: &'static str) -> WindowError {
    WindowError {
        field,
        message,
        expected,
    }
}

/// The time zone of a window, `UTC` when absent.
pub fn zone(name: Option<&str>) -> Result<Tz, WindowError> {
    match name {
        None => Ok(Tz::UTC),
        Some(name) => name.parse::<Tz>().map_err(|_| {
            error(
                "spec.timeZone",
                format!("unknown time zone `{name}`"),
                "an IANA time zone such as `UTC`, `Europe/Berlin` or `America/New_York`",
            )
        }),
    }
}

/// A moment written as RFC 3339 (with its own offset) or as a local date and time in `zone`.
fn moment(field: &'static str, text: &str, zone: Tz) -> Result<DateTime<Utc>, WindowError> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let bad = || {
        error(
            field,
            format!("bad date and time `{text}`"),
            "`2026-12-24T18:00` (in timeZone) or RFC 3339 such as `2026-12-24T18:00:00+01:00`",
        )
    };
    let naive = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .ok_or_else(bad)?;
    // In a fall-back overlap the first pass; in a spring-forward gap there is no such time.
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| {
            error(
                field,
                format!("`{text}` does not exist in {zone} (a daylight-saving gap)"),
                "a local time outside the gap",
            )
        })
}

/// Parses a window's times: exactly one of `cron` + `duration` and `start` + `end`.
pub fn parse(spec: &WindowSpec) -> Result<Parsed, WindowError> {
    let zone = zone(spec.time_zone.as_deref())?;
    let when = match (&spec.cron, &spec.duration, &spec.start, &spec.end) {
        (Some(cron), Some(duration), None, None) => {
            let cron = CronParser::builder()
                .seconds(Seconds::Disallowed)
                .year(Year::Disallowed)
                .build()
                .parse(cron)
                .map_err(|e| {
                    error(
                        "spec.cron",
                        format!("bad cron line `{cron}`: {e}"),
                        "five fields: minute hour day-of-month month day-of-week",
                    )
                })?;
            let duration = humantime::parse_duration(duration)
                .ok()
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .filter(|d| *d > chrono::Duration::zero())
                .ok_or_else(|| {
                    error(
                        "spec.duration",
                        format!("bad duration `{duration}`"),
                        "a positive duration such as `2h` or `2d 12h`",
                    )
                })?;
            When::Recurring {
                cron: Box::new(cron),
                duration,
            }
        }
        (None, None, Some(start), Some(end)) => {
            let start = moment("spec.start", start, zone)?;
            let end = moment("spec.end", end, zone)?;
            if end <= start {
                return Err(error(
                    "spec.end",
                    "the window ends before it starts".into(),
                    "an end after the start",
                ));
            }
            When::Range { start, end }
        }
        _ => {
            return Err(error(
                "spec",
                "a window needs either `cron` and `duration`, or `start` and `end`".into(),
                "`cron` + `duration` (recurring) or `start` + `end` (one-off)",
            ));
        }
    };
    Ok(Parsed { zone, when })
}

impl Parsed {
    /// When the occurrence open at `now` closes, or `None` when the window is closed at `now`.
    pub fn open_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.when {
            When::Range { start, end } => (*start <= now && now < *end).then_some(*end),
            When::Recurring { cron, duration } => {
                // The latest start at or before now has the latest end: every occurrence lasts
                // as long.
                let start = cron
                    .find_previous_occurrence(&now.with_timezone(&self.zone), true)
                    .ok()?
                    .with_timezone(&Utc);
                let end = start + *duration;
                (now < end).then_some(end)
            }
        }
    }

    /// When the window next opens after `now`, if it does.
    pub fn next_open(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.when {
            When::Range { start, .. } => (*start > now).then_some(*start),
            When::Recurring { cron, .. } => cron
                .find_next_occurrence(&now.with_timezone(&self.zone), false)
                .ok()
                .map(|at| at.with_timezone(&Utc)),
        }
    }
}

/// Why a host refuses changes at a moment: the window that decides and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The deny window that is open, or the allow window that opens next (or the first one).
    pub window: String,
    pub action: WindowAction,
    /// When changes are possible again (the deny window closes, the allow window opens), if
    /// ever.
    pub until: Option<DateTime<Utc>>,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let until = self
            .until
            .map(|at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        match (self.action, until) {
            (WindowAction::Deny, Some(until)) => write!(
                f,
                "change window `{}` (deny) is open until {until}: no changes here until then",
                self.window
            ),
            (WindowAction::Deny, None) => {
                write!(f, "change window `{}` (deny) is open", self.window)
            }
            (WindowAction::Allow, Some(until)) => write!(
                f,
                "outside every allow window of this host: changes are allowed only inside one \
                 (`{}` opens next, at {until})",
                self.window
            ),
            (WindowAction::Allow, None) => write!(
                f,
                "outside every allow window of this host, and none opens again (`{}`)",
                self.window
            ),
        }
    }
}

fn selects(window: &WindowDocument, host: &HostFacts) -> bool {
    Selector::parse(&window.spec.target).is_ok_and(|s| s.matches(host))
}

impl FleetModel {
    pub fn windows(&self) -> impl Iterator<Item = (usize, &WindowDocument)> {
        self.documents
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match d {
                crate::Document::Window(w) => Some((i, w)),
                _ => None,
            })
    }

    /// Whether the change windows that select `host` close it to changes at `now`: an open
    /// deny window (the one that stays open longest is named), or allow windows none of which
    /// is open (the one that opens first is named). Windows that do not parse are reported by
    /// validation and judge nothing.
    pub fn change_window_closed(&self, host: &HostFacts, now: DateTime<Utc>) -> Option<Closed> {
        let mut deny: Option<Closed> = None;
        let mut allow_open = false;
        let mut next_allow: Option<Closed> = None;
        for (_, window) in self.windows().filter(|(_, w)| selects(w, host)) {
            let Ok(parsed) = parse(&window.spec) else {
                continue;
            };
            let open_until = parsed.open_until(now);
            match window.spec.action {
                WindowAction::Deny => {
                    if let Some(until) = open_until
                        && deny.as_ref().is_none_or(|d| d.until < Some(until))
                    {
                        deny = Some(Closed {
                            window: window.metadata.name.clone(),
                            action: WindowAction::Deny,
                            until: Some(until),
                        });
                    }
                }
                WindowAction::Allow => {
                    allow_open |= open_until.is_some();
                    let next = parsed.next_open(now);
                    let earlier = match (&next_allow, next) {
                        (None, _) => true,
                        (Some(current), Some(next)) => current.until.is_none_or(|c| next < c),
                        (Some(_), None) => false,
                    };
                    if earlier {
                        next_allow = Some(Closed {
                            window: window.metadata.name.clone(),
                            action: WindowAction::Allow,
                            until: next,
                        });
                    }
                }
            }
        }
        deny.or(if allow_open { None } else { next_allow })
    }
}
