//! Change windows (`kind: Window`): recurring and one-off windows in IANA time zones judged at
//! given moments, allow and deny, in YAML and KDL, and their spelling mistakes at file:line:col.

use chrono::{DateTime, Utc};
use remote_agents_spec::{Code, HostFacts, WindowAction, load, load_one};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

const FLEET: &str = "apiVersion: remote-agents.dev/v1
kind: Fleet
metadata: {name: w}
spec:
  hosts:
    - {name: web-1, tags: [web]}
    - {name: db-1, tags: [db]}
";

/// Friday 18:00 to Monday 06:00, Berlin time: no changes on the databases.
const WEEKEND_FREEZE: &str = "apiVersion: remote-agents.dev/v1
kind: Window
metadata: {name: weekend-freeze}
spec:
  target: tag:db
  action: deny
  cron: \"0 18 * * 5\"
  duration: 60h
  timeZone: Europe/Berlin
";

const WEEKEND_FREEZE_KDL: &str = "Window weekend-freeze {
    target \"tag:db\"
    action deny
    cron \"0 18 * * 5\"
    duration \"60h\"
    timeZone \"Europe/Berlin\"
}
";

#[test]
fn a_recurring_deny_window_closes_its_hosts_in_its_time_zone() {
    let (model, diagnostics) = load(&[("fleet.yaml", FLEET), ("windows.yaml", WEEKEND_FREEZE)]);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    let db = HostFacts::new("db-1").with_tag("db");
    let web = HostFacts::new("web-1").with_tag("web");
    // Friday 2026-12-04 17:30 UTC is 18:30 in Berlin (UTC+1 in winter): open until Monday
    // 06:00 Berlin, 05:00 UTC.
    let closed = model
        .change_window_closed(&db, at("2026-12-04T17:30:00Z"))
        .expect("inside the freeze");
    assert_eq!(closed.window, "weekend-freeze");
    assert_eq!(closed.action, WindowAction::Deny);
    assert_eq!(closed.until, Some(at("2026-12-07T05:00:00Z")));
    assert_eq!(
        closed.to_string(),
        "change window `weekend-freeze` (deny) is open until 2026-12-07T05:00:00Z: no changes \
         here until then"
    );
    // Friday 16:59 UTC is 17:59 in Berlin: not yet; Monday 05:00 UTC: over.
    assert_eq!(
        model.change_window_closed(&db, at("2026-12-04T16:59:00Z")),
        None
    );
    assert_eq!(
        model.change_window_closed(&db, at("2026-12-07T05:00:00Z")),
        None
    );
    // Hosts the window does not select are never closed by it.
    assert_eq!(
        model.change_window_closed(&web, at("2026-12-05T12:00:00Z")),
        None
    );
    // In summer Berlin is UTC+2: the freeze starts at 16:00 UTC.
    assert!(
        model
            .change_window_closed(&db, at("2026-07-03T16:00:00Z"))
            .is_some()
    );
    assert!(
        model
            .change_window_closed(&db, at("2026-07-03T15:59:00Z"))
            .is_none()
    );

    // The KDL spelling is the same window.
    let (kdl, diagnostics) = load(&[("fleet.yaml", FLEET), ("windows.kdl", WEEKEND_FREEZE_KDL)]);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    assert_eq!(model, kdl);
}

#[test]
fn allow_windows_close_their_hosts_outside_them_and_a_range_is_one_off() {
    let windows = "apiVersion: remote-agents.dev/v1
kind: Window
metadata: {name: web-mornings}
spec:
  target: tag:web
  action: allow
  cron: \"0 8 * * 1-5\"
  duration: 4h
---
apiVersion: remote-agents.dev/v1
kind: Window
metadata: {name: migration}
spec:
  target: all
  action: deny
  start: \"2026-12-10T09:00\"
  end: \"2026-12-10T09:30\"
  timeZone: America/New_York
";
    let (model, diagnostics) = load(&[("fleet.yaml", FLEET), ("windows.yaml", windows)]);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    let web = HostFacts::new("web-1").with_tag("web");
    let db = HostFacts::new("db-1").with_tag("db");
    // Tuesday 2026-12-08 09:00 UTC: inside the morning window.
    assert_eq!(
        model.change_window_closed(&web, at("2026-12-08T09:00:00Z")),
        None
    );
    // 13:00: closed until Wednesday 08:00.
    let closed = model
        .change_window_closed(&web, at("2026-12-08T13:00:00Z"))
        .expect("outside the mornings");
    assert_eq!(
        (closed.window.as_str(), closed.action, closed.until),
        (
            "web-mornings",
            WindowAction::Allow,
            Some(at("2026-12-09T08:00:00Z"))
        )
    );
    assert!(closed.to_string().contains("outside every allow window"));
    // db-1 has no allow window: open except during the one-off migration, 09:00-09:30 New
    // York (UTC-5), 14:00-14:30 UTC.
    assert_eq!(
        model.change_window_closed(&db, at("2026-12-10T13:59:00Z")),
        None
    );
    let closed = model
        .change_window_closed(&db, at("2026-12-10T14:10:00Z"))
        .expect("during the migration");
    assert_eq!(closed.until, Some(at("2026-12-10T14:30:00Z")));
    assert_eq!(
        model.change_window_closed(&db, at("2026-12-11T14:10:00Z")),
        None
    );
    // A deny window wins over an open allow window: Thursday 10th at 09:10 New York is 14:10
    // UTC, after the web morning window (08:00-12:00 UTC) anyway; at 14:10 web is closed by both
    // and the deny window is named.
    let closed = model
        .change_window_closed(&web, at("2026-12-10T14:10:00Z"))
        .unwrap();
    assert_eq!(closed.window, "migration");
}

#[test]
fn mistakes_in_a_window_are_reported_at_their_field() {
    let cases: &[(&str, &str, u32, &str)] = &[
        (
            "  timeZone: Mars/Olympus\n",
            "spec.timeZone",
            9,
            "unknown time zone `Mars/Olympus`",
        ),
        (
            "  start: \"2026-12-10T09:00\"\n",
            "spec",
            5,
            "either `cron` and `duration`",
        ),
        (
            "  duration: soon\n",
            "spec.duration",
            8,
            "bad duration `soon`",
        ),
    ];
    for (extra, field, line, message) in cases {
        let base = WEEKEND_FREEZE.replace("  timeZone: Europe/Berlin\n", "");
        let text = if extra.contains("duration") {
            base.replace("  duration: 60h\n", extra)
        } else {
            format!("{base}{extra}")
        };
        let (_, diagnostics) = load_one("w.yaml", &text);
        assert_eq!(diagnostics.len(), 1, "{text}\n{diagnostics:#?}");
        let d = &diagnostics[0];
        assert_eq!(
            (d.code, d.field.as_str(), d.loc.line),
            (Code::BadValue, *field, *line),
            "{d}"
        );
        assert!(d.message.contains(message), "{d}");
    }
    let text = "apiVersion: remote-agents.dev/v1
kind: Window
metadata: {name: backwards}
spec:
  target: all
  action: deny
  start: \"2026-12-10T10:00\"
  end: \"2026-12-10T09:00\"
";
    let (_, diagnostics) = load_one("w.yaml", text);
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    assert_eq!(
        (diagnostics[0].field.as_str(), diagnostics[0].loc.line),
        ("spec.end", 8)
    );
    assert!(diagnostics[0].message.contains("ends before it starts"));
    let (_, diagnostics) = load_one("w.yaml", &text.replace("action: deny", "action: block"));
    assert!(
        diagnostics
            .iter()
            .any(|d| d.field == "spec.action" && d.message.contains("unknown window action")),
        "{diagnostics:#?}"
    );
}
