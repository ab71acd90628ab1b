//! `set_mode`: overrides the node's mode for a while (recorded, and reported as drift); setting
//! the configured mode clears the override. Gate: the locally configured mode allows admin (a
//! configured `disabled` is a kill switch no request lifts; an override to `disabled` can be
//! lifted by another `set_mode`), and the ttl is in range.

use std::sync::Arc;
use std::time::Duration;

use remote_agents_ops::operation::SetMode;
use remote_agents_ops::{ModeOverride, Outcome, SetModeArgs, SetModeResult};

use super::{Call, Run, blocking};
use crate::journal::now_ms;
use crate::node::{Node, OVERRIDE_KEY};
use crate::policy::{Access, Mode, Policy, Refusal};

/// Default lifetime of a `set_mode` override.
const DEFAULT_OVERRIDE_TTL: Duration = Duration::from_secs(3600);

impl Run for SetMode {
    type Checked = SetModeArgs;

    fn check(node: &Node, _mode: Mode, a: SetModeArgs) -> Result<SetModeArgs, Refusal> {
        Policy::check_mode(node.settings.mode.value, Access::Admin)?;
        if let Some(ttl) = a.ttl_secs {
            remote_agents_ops::ttl_from_secs("ttl_secs", ttl)
                .map_err(|reason| Refusal { reason })?;
        }
        Ok(a)
    }

    async fn execute(node: Arc<Node>, call: Call, args: SetModeArgs) -> Outcome {
        blocking(move || set_mode(&node, &call.request_id, args)).await
    }
}

fn set_mode(node: &Node, request_id: &str, args: SetModeArgs) -> Outcome {
    // The gate checked ttl_secs against its cap; the sum saturates all the same, so no ttl can
    // wrap around to "expires now".
    let ttl = args
        .ttl_secs
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_OVERRIDE_TTL);
    let now = now_ms();
    let record = ModeOverride {
        mode: args.mode,
        set_by: request_id.to_string(),
        reason: args.reason,
        set_at_ms: now,
        expires_at_ms: now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
    };
    // Setting the configured mode clears the override rather than recording a no-op drift.
    let stored = (args.mode != node.configured_mode()).then_some(&record);
    if let Err(e) = node.store.set_meta(OVERRIDE_KEY, stored) {
        return Outcome::failed(e);
    }
    node.mode_override_changed();
    Outcome::ok(&SetModeResult {
        configured_mode: node.configured_mode(),
        effective_mode: node.effective_mode(),
        expires_at_ms: if stored.is_some() {
            record.expires_at_ms
        } else {
            0
        },
    })
}
