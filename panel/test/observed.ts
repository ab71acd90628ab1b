//! A `desired_status` answer for the page's unit tests.

import type { ObservedStatus } from "../src/ui/desired.ts";

/** A `desired_status` answer; without fields, what a node without any applied spec says. */
export function observed(host: string, fields: Partial<ObservedStatus> = {}): ObservedStatus {
  return {
    host,
    agent_id: host,
    observed_generation: 0,
    revision: null,
    spec_hash: null,
    sync: "Unknown",
    health: "Healthy",
    mode: "edit",
    desired_mode: "edit",
    tags: [],
    schedules: [],
    jobs: [],
    conditions: [
      { type: "Reconciled", status: false, reason: "NoDesiredState", message: "no bundle applied yet; running from local config" },
      { type: "Drifted", status: false, reason: "NoDrift", message: "" },
    ],
    drift: [],
    last_changes: 0,
    reconciled_at_ms: 1,
    ...fields,
  };
}
