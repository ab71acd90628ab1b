//! MCP tool and RPC arguments: arbitrary JSON read as the RPC `Envelope` and `Request` (as a
//! node decodes a peer's request) and as every tool's argument struct (as rmcp hands a tool its
//! `arguments`), then through the checks that run before anything executes (numbers, schedule
//! lines, search patterns, write content, job plans). Nothing panics, a duration that passes its
//! check can be added to the clock, and a request that decodes encodes back to itself (requests
//! are journaled as JSON and read back).
#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use remote_agents_node::fleet::tools as fleet_tools;
use remote_agents_node::mapreduce::tool::MapReduceArgs;
use remote_agents_mcp::spec_tools;
use remote_agents_ops::{self as ops, Envelope, Request};
use remote_agents_node::schedule::{self, cron::CronLine};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A fixed instant, so schedule slots do not depend on when the fuzzer runs.
fn fixed_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000, 0).expect("a valid timestamp")
}

fn args<T: DeserializeOwned>(value: &Value) -> Option<T> {
    serde_json::from_value(value.clone()).ok()
}

fn check_request(request: &Request) {
    let _ = (
        request.name(),
        request.is_read_only(),
        request.is_idempotent(),
    );
    let _ = (request.needs_started_record(), request.capability());
    let _ = (request.agent_id(), request.summary());
    let _ = request.clone().without_agent_id();
    let text = serde_json::to_vec(request).expect("a request encodes");
    let again: Request = serde_json::from_slice(&text).expect("an encoded request decodes");
    assert_eq!(&again, request, "a request changed through JSON");
    match request {
        Request::Exec(exec) => {
            if let Ok(timeout) = exec.timeout() {
                check_deadline(timeout);
            }
            let _ = exec.max_output();
        }
        Request::SetMode(set) => {
            if let Some(Ok(ttl)) = set.ttl_secs.map(|ttl| ops::ttl_from_secs("ttl_secs", ttl)) {
                check_deadline(ttl);
            }
        }
        Request::ScheduleAdd(add) => check_schedule(add),
        Request::FileSearch(search) => {
            let _ = remote_agents_node::search::Query::new(
                search.name.as_deref(),
                search.content.as_deref(),
                search.images_only,
                search.include_hidden,
                search.max_results,
            );
        }
        Request::WriteFile(write) => {
            let _ = remote_agents_node::fs::decode(&write.content, write.encoding);
        }
        _ => {}
    }
}

/// A duration that passed its check can be added to the clock, as the node does.
fn check_deadline(wait: std::time::Duration) {
    assert!(
        std::time::Instant::now().checked_add(wait).is_some(),
        "{wait:?} passed the check but overflows the clock"
    );
}

/// The fan-out options every fleet tool takes, checked as the fleet tools check them.
fn check_fanout(fanout: &fleet_tools::FanoutArgs) {
    for (field, seconds) in [
        ("timeout_secs", fanout.timeout_secs),
        ("deadline_secs", fanout.deadline_secs),
    ] {
        if let Some(Ok(wait)) = seconds.map(|s| ops::duration_from_secs(field, s)) {
            check_deadline(wait);
        }
    }
}

fn check_schedule(add: &ops::ScheduleAddArgs) {
    let _ = schedule::validate_add(add);
    if let Ok(line) = CronLine::parse(&add.cron) {
        let now = fixed_now();
        if let Some(next) = line.next_after(now) {
            let _ = line.period_after(next);
        }
        let _ = line.due(now, now + chrono::Duration::days(2));
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(data) {
        check_request(&envelope.request);
    }
    if let Ok(request) = serde_json::from_slice::<Request>(data) {
        check_request(&request);
    }
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // The node's own tools are the `Request` variants' argument structs.
    for op in ops::operation::NAMES {
        let tagged = serde_json::json!({ "op": op, "args": value });
        if let Ok(request) = serde_json::from_value::<Request>(tagged) {
            check_request(&request);
        }
    }
    let _ = args::<ops::ExecArgs>(&value);
    let _ = args::<ops::BackupsArgs>(&value);
    if let Some(job) = args::<MapReduceArgs>(&value) {
        let _ = job.plan();
    }
    let _ = args::<fleet_tools::FleetRequest>(&value);
    if let Some(fanout) = args::<fleet_tools::FanoutArgs>(&value) {
        check_fanout(&fanout);
    }
    if let Some(exec) = args::<fleet_tools::FleetExecArgs>(&value) {
        check_fanout(&exec.fanout);
    }
    let _ = args::<fleet_tools::FleetReadArgs>(&value);
    let _ = args::<fleet_tools::FleetWriteArgs>(&value);
    let _ = args::<fleet_tools::FleetGitArgs>(&value);
    let _ = args::<fleet_tools::FleetSearchArgs>(&value);
    let _ = args::<fleet_tools::JobGetArgs>(&value);
    let _ = args::<fleet_tools::JobListArgs>(&value);
    let _ = args::<spec_tools::SpecGetArgs>(&value);
    let _ = args::<spec_tools::SpecPlanArgs>(&value);
    let _ = args::<spec_tools::SpecApplyArgs>(&value);
    let _ = args::<spec_tools::SpecEditArgs>(&value);
    let _ = args::<spec_tools::FleetStatusArgs>(&value);
});
