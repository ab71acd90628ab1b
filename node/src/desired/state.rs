//! The node's accepted desired state: which bundles it trusts (signature, operator list,
//! generation), the newest accepted one (persisted, so the node keeps working from it while the
//! relay is down), the history of accepted generations, and who may command this host.
//!
//! Trust: a node with locally configured operator keys (root-owned config) accepts bundles
//! signed by those keys only. Otherwise the operators of the bundle it already holds decide
//! (a new bundle may rotate them, signed by a current one). A fresh node with neither trusts the
//! first bundle that is signed by an operator it declares (trust on first use); a fleet that
//! declares no operators is open: any holder of the room token may sign. Configure `operators`
//! locally to close the first-use window.

use std::sync::{Arc, RwLock};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use remote_agents_spec::{Capability, HostFacts, Operator};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::operator::format_public;
use crate::journal::{Store, StoreError};
use remote_agents_ops::bundle::{BundleContent, BundleError, SignedBundle, VerifiedBundle};

/// Accepted bundles by generation (the signed JSON, as received).
const BUNDLES: TableDefinition<u64, &[u8]> = TableDefinition::new("desired_bundles");
/// How many accepted generations a node keeps for `history` and `rollback`.
const KEEP_GENERATIONS: usize = 32;

/// Why a node refused a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("bundle signed by {signer}, which is not an operator allowed to apply to this host")]
    UntrustedSigner { signer: String },
    #[error("bundle generation {offered} is older than the applied generation {current}")]
    Stale { offered: u64, current: u64 },
    #[error(
        "bundle generation {generation} differs from the applied bundle of the same generation"
    )]
    Conflict { generation: u64 },
    #[error("cannot persist the bundle: {0}")]
    Store(String),
    /// A closed change window of the applied spec holds new generations back.
    #[error(
        "{0}; the applied generation stays in force (apply with --override-window REASON to \
         change anyway)"
    )]
    Window(String),
}

/// What happened to an offered bundle that was not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accepted {
    /// A newer generation, now applied.
    New,
    /// The bundle already applied.
    Current,
    /// A rollout's wave that does not include this host (the bundle's signed `rollout` scope):
    /// the applied generation stays in force until a wave that includes it, or a plain apply.
    OutsideWave,
}

pub use remote_agents_ops::bundle::HistoryEntry;

/// The desired state a node holds.
pub struct DesiredState {
    store: Arc<Store>,
    local_operators: Vec<[u8; 32]>,
    current: RwLock<Option<Arc<VerifiedBundle>>>,
    changed: watch::Sender<u64>,
    /// Held from the generation check to the swap: the same bundle arriving at once from the
    /// relay and from fleetctl is accepted once and found current the second time.
    accepting: std::sync::Mutex<()>,
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// When an adopted bundle is written to the store.
#[derive(Debug, Clone, Copy)]
enum Persist {
    /// In a durable commit of its own, before it is adopted.
    Commit,
    /// With the store's next commit: the audit commit of the request that offered it.
    WithNextCommit,
}

/// Stores `json` as `generation` and keeps only the newest [`KEEP_GENERATIONS`].
fn write_bundle(
    tx: &redb::WriteTransaction,
    generation: u64,
    json: &[u8],
) -> Result<(), StoreError> {
    let mut table = tx.open_table(BUNDLES).map_err(db)?;
    table.insert(generation, json).map_err(db)?;
    let generations: Vec<u64> = table
        .iter()
        .map_err(db)?
        .filter_map(|item| item.ok().map(|(k, _)| k.value()))
        .collect();
    let excess = generations.len().saturating_sub(KEEP_GENERATIONS);
    for generation in &generations[..excess] {
        table.remove(generation).map_err(db)?;
    }
    Ok(())
}

impl DesiredState {
    /// Loads the newest accepted bundle from the store. `local_operators` are keys from the
    /// node's own config (`ed25519:...`); malformed ones are an error.
    pub fn open(store: Arc<Store>, local_operators: &[String]) -> Result<Self, String> {
        let local_operators = local_operators
            .iter()
            .map(|key| {
                remote_agents_spec::parse_operator_key(key).map_err(|problem| {
                    format!("operator key `{key}` in the node config: {problem}")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let state = DesiredState {
            store,
            local_operators,
            current: RwLock::new(None),
            accepting: std::sync::Mutex::new(()),
            changed: watch::channel(0).0,
        };
        let newest = state
            .stored()
            .map_err(|e| format!("cannot read the stored desired state: {e}"))?
            .into_iter()
            .rev()
            .find_map(|(_, signed)| signed.verify().ok());
        if let Some(bundle) = newest {
            let generation = bundle.content.generation;
            *state.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(bundle));
            state.changed.send_replace(generation);
        }
        Ok(state)
    }

    fn stored(&self) -> Result<Vec<(u64, SignedBundle)>, StoreError> {
        let tx = self.store.database().begin_read().map_err(db)?;
        let table = match tx.open_table(BUNDLES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(db(e)),
        };
        let mut out = Vec::new();
        for item in table.iter().map_err(db)? {
            let (generation, bytes) = item.map_err(db)?;
            if let Ok(signed) = SignedBundle::from_json(bytes.value()) {
                out.push((generation.value(), signed));
            }
        }
        Ok(out)
    }

    fn persist(&self, bundle: &VerifiedBundle, when: Persist) -> Result<(), StoreError> {
        let generation = bundle.content.generation;
        let json = bundle.signed.to_json();
        match when {
            Persist::Commit => {
                let tx = self.store.database().begin_write().map_err(db)?;
                write_bundle(&tx, generation, &json)?;
                tx.commit().map_err(db)?;
            }
            Persist::WithNextCommit => self
                .store
                .write_with_next_commit(Box::new(move |tx| write_bundle(tx, generation, &json))),
        }
        Ok(())
    }

    /// The applied bundle, if any.
    pub fn current(&self) -> Option<Arc<VerifiedBundle>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The applied generation (0 before any bundle).
    pub fn generation(&self) -> u64 {
        self.current().map_or(0, |b| b.content.generation)
    }

    /// Fires with the new generation whenever a bundle is accepted.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The operators who decide: local ones (all capabilities, all hosts) or else the applied
    /// spec's. Empty: an open fleet.
    pub fn operators(&self) -> Vec<Operator> {
        if !self.local_operators.is_empty() {
            return self
                .local_operators
                .iter()
                .enumerate()
                .map(|(i, key)| Operator {
                    name: format!("local-{i}"),
                    key: format_public(key),
                    target: None,
                    allow: Vec::new(),
                })
                .collect();
        }
        self.current()
            .and_then(|b| b.model.fleet().map(|(_, f)| f.spec.operators.clone()))
            .unwrap_or_default()
    }

    /// Verifies `signed` and applies it when it is trusted and newer. `host` is this node as
    /// the spec sees it (an operator's `target` must select it).
    pub fn offer(&self, signed: &SignedBundle, host: &HostFacts) -> Result<Accepted, Refusal> {
        self.offer_with(signed, host, Persist::Commit)
    }

    /// [`DesiredState::offer`] for a request whose audit commit follows before it is answered:
    /// the bundle is written in that commit rather than one of its own
    /// ([`Store::write_with_next_commit`]). A crash in between loses nothing anyone was told:
    /// the offer was not acknowledged, and the node comes back at its previous generation and
    /// catches up.
    pub fn offer_before_commit(
        &self,
        signed: &SignedBundle,
        host: &HostFacts,
    ) -> Result<Accepted, Refusal> {
        self.offer_with(signed, host, Persist::WithNextCommit)
    }

    fn offer_with(
        &self,
        signed: &SignedBundle,
        host: &HostFacts,
        persist: Persist,
    ) -> Result<Accepted, Refusal> {
        // Trust and ordering are decided on the signer and the generation alone, before the
        // spec is parsed: a bundle from a key this node does not trust, or an old one, is
        // refused unread, so a room member without an operator key cannot make every node
        // parse a hostile spec.
        let bundle = signed.authenticate()?;
        let _accepting = self.accepting.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current();
        let anchor = self.operators();
        let untrusted = |judges: &[Operator], bundle_issuer: &str, key: &[u8; 32]| {
            (!judges.is_empty()
                && authorize_key(judges, Some(key), Capability::Apply, host).is_err())
            .then(|| Refusal::UntrustedSigner {
                signer: bundle_issuer.to_string(),
            })
        };
        if let Some(refusal) = untrusted(
            anchor.as_slice(),
            &bundle.content.issuer,
            &bundle.issuer_key,
        ) {
            return Err(refusal);
        }
        if let Some(current) = &current {
            let (offered, held) = (bundle.content.generation, current.content.generation);
            if offered < held {
                return Err(Refusal::Stale {
                    offered,
                    current: held,
                });
            }
            if offered == held {
                return if bundle.hash == current.hash {
                    Ok(Accepted::Current)
                } else {
                    Err(Refusal::Conflict {
                        generation: offered,
                    })
                };
            }
        }
        // A rollout's wave that leaves this host out is not for it: it keeps what it has, and
        // the spec of a bundle it will not take is never read.
        if let Some(scope) = &bundle.content.rollout
            && !scope.includes(&host.name)
        {
            return Ok(Accepted::OutsideWave);
        }
        // Only now the spec is read (within the spec crate's limits): with no operators to
        // anchor trust, the operators the bundle declares decide (trust on first use).
        let bundle = bundle.load()?;
        if anchor.is_empty() {
            let declared: Vec<Operator> = bundle
                .model
                .fleet()
                .map(|(_, f)| f.spec.operators.clone())
                .unwrap_or_default();
            if let Some(refusal) = untrusted(
                declared.as_slice(),
                &bundle.content.issuer,
                &bundle.issuer_key,
            ) {
                return Err(refusal);
            }
        }
        // A closed change window of the applied spec holds a new generation back, unless its
        // signer wrote an override with a reason into it (audited with the offer).
        if let Some(current) = &current
            && let Some(closed) = current.model.change_window_closed(host, chrono::Utc::now())
        {
            match window_override_reason(&bundle.content) {
                Some(reason) => tracing::warn!(
                    window = %closed.window,
                    reason,
                    generation = bundle.content.generation,
                    "change window overridden by the bundle's signer"
                ),
                None => return Err(Refusal::Window(closed.to_string())),
            }
        }
        self.persist(&bundle, persist)
            .map_err(|e| Refusal::Store(e.to_string()))?;
        let generation = bundle.content.generation;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(bundle));
        self.changed.send_replace(generation);
        Ok(Accepted::New)
    }

    /// Applies spec files from a local authority (a watched folder or git repository, trusted
    /// like root-owned config): no operator check, but the bundle is signed by `signer` so the
    /// stored copy stays verifiable and can be passed on. A new generation (current + 1) only
    /// when the files differ from the applied ones: the same content again changes nothing.
    /// Returns the applied bundle and whether it is new.
    pub fn apply_local(
        &self,
        files: Vec<remote_agents_ops::bundle::SpecFile>,
        revision: String,
        signer: &super::operator::OperatorKey,
    ) -> Result<(Arc<VerifiedBundle>, Accepted), Refusal> {
        let _accepting = self.accepting.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current();
        if let Some(current) = &current
            && current.spec_hash == remote_agents_ops::bundle::spec_hash(&files)
        {
            return Ok((current.clone(), Accepted::Current));
        }
        let (model, _) = remote_agents_spec::load(
            &files
                .iter()
                .map(|f| (f.path.as_str(), f.text.as_str()))
                .collect::<Vec<_>>(),
        );
        let content = remote_agents_ops::bundle::BundleContent {
            fleet: model
                .fleet()
                .map(|(_, f)| f.metadata.name.clone())
                .unwrap_or_default(),
            generation: current.as_ref().map_or(0, |b| b.content.generation) + 1,
            revision,
            issued_at_ms: crate::journal::now_ms(),
            issuer: signer.public(),
            files,
            window_override: None,
            rollout: None,
        };
        let bundle = Arc::new(SignedBundle::sign(&content, signer).verify()?);
        self.persist(&bundle, Persist::Commit)
            .map_err(|e| Refusal::Store(e.to_string()))?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(bundle.clone());
        self.changed.send_replace(bundle.content.generation);
        Ok((bundle, Accepted::New))
    }

    /// Accepted generations, oldest first.
    pub fn history(&self) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(self
            .stored()?
            .into_iter()
            .filter_map(|(_, signed)| signed.verify().ok())
            .map(|bundle| HistoryEntry::from(&bundle))
            .collect())
    }

    /// A kept bundle by generation number, revision (or its prefix) or hash prefix.
    pub fn find(&self, wanted: &str) -> Result<Option<SignedBundle>, StoreError> {
        let by_generation = wanted.parse::<u64>().ok();
        Ok(self
            .stored()?
            .into_iter()
            .rev()
            .find(|(generation, signed)| {
                Some(*generation) == by_generation
                    || signed.verify().is_ok_and(|b| {
                        b.content.revision == wanted
                            || (wanted.len() >= 7
                                && (b.content.revision.starts_with(wanted)
                                    || b.hash.starts_with(wanted)))
                    })
            })
            .map(|(_, signed)| signed))
    }

    /// Whether the caller that proved `operator` may use `capability` on this host.
    pub fn authorize(
        &self,
        operator: Option<&[u8; 32]>,
        capability: Capability,
        host: &HostFacts,
    ) -> Result<(), String> {
        let operators = self.operators();
        if operators.is_empty() {
            return Ok(());
        }
        authorize_key(&operators, operator, capability, host)
    }
}

/// The reason a bundle gives for taking it inside a closed change window, if it gives one.
pub fn window_override_reason(content: &BundleContent) -> Option<&str> {
    content
        .window_override
        .as_deref()
        .map(str::trim)
        .filter(|reason| !reason.is_empty())
}

/// Deny by default: `key` must belong to an operator that allows `capability` and whose target
/// selects `host` (the spec's rule, shared with the fleet repo's policy tests).
fn authorize_key(
    operators: &[Operator],
    key: Option<&[u8; 32]>,
    capability: Capability,
    host: &HostFacts,
) -> Result<(), String> {
    let text = key.map(format_public);
    remote_agents_spec::gate::authorize_operator(operators, text.as_deref(), capability, host)
}

#[cfg(test)]
mod tests {
    use super::super::operator::OperatorKey;
    use super::*;
    use remote_agents_ops::bundle::fixtures::{FLEET, content};

    fn state(dir: &std::path::Path, local: &[String]) -> DesiredState {
        DesiredState::open(Arc::new(Store::open(dir).unwrap()), local).unwrap()
    }

    fn with_operators(keys: &[(&str, &OperatorKey, &str)]) -> String {
        let mut text = FLEET.replace("spec:\n", "spec:\n  operators:\n");
        let mut lines = String::new();
        for (name, key, extra) in keys {
            lines.push_str(&format!(
                "    - {{name: {name}, key: \"{}\"{extra}}}\n",
                key.public()
            ));
        }
        text = text.replace("  operators:\n", &format!("  operators:\n{lines}"));
        text
    }

    #[test]
    fn a_bundle_offered_before_a_commit_is_adopted_and_kept_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key = OperatorKey::generate();
        let host = HostFacts::new("web-1");
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let desired = DesiredState::open(store.clone(), &[]).unwrap();
        let three = SignedBundle::sign(&content(&key, 3, FLEET), &key);
        assert_eq!(
            desired.offer_before_commit(&three, &host),
            Ok(Accepted::New)
        );
        assert_eq!(desired.generation(), 3);
        // Until the request's audit commit the bundle is adopted in memory only.
        assert!(desired.stored().unwrap().is_empty());
        let audit = crate::audit::AuditRecord {
            seq: 0,
            at_ms: 0,
            request_id: "offer-3".into(),
            caller: "cli".into(),
            op: "desired_offer".into(),
            summary: "generation 3".into(),
            decision: "allowed".into(),
            result: "ok".into(),
            detail: None,
        };
        store.finish_audit_only(audit).unwrap();
        let stored: Vec<u64> = desired.stored().unwrap().iter().map(|(g, _)| *g).collect();
        assert_eq!(stored, [3]);
        drop(desired);
        drop(store);
        assert_eq!(state(dir.path(), &[]).generation(), 3);
    }

    #[test]
    fn generations_only_move_forward_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key = OperatorKey::generate();
        let host = HostFacts::new("web-1");
        let desired = state(dir.path(), &[]);
        let two = SignedBundle::sign(&content(&key, 2, FLEET), &key);
        assert_eq!(desired.offer(&two, &host), Ok(Accepted::New));
        assert_eq!(desired.offer(&two, &host), Ok(Accepted::Current));
        let one = SignedBundle::sign(&content(&key, 1, FLEET), &key);
        assert_eq!(
            desired.offer(&one, &host),
            Err(Refusal::Stale {
                offered: 1,
                current: 2
            })
        );
        let mut other = content(&key, 2, FLEET);
        other.issued_at_ms = 99;
        assert_eq!(
            desired.offer(&SignedBundle::sign(&other, &key), &host),
            Err(Refusal::Conflict { generation: 2 })
        );
        drop(desired);
        let reopened = state(dir.path(), &[]);
        assert_eq!(reopened.generation(), 2);
        assert_eq!(reopened.history().unwrap().len(), 1);
        assert_eq!(
            reopened.find("2").unwrap().as_ref(),
            Some(&two),
            "kept for rollback"
        );
    }

    #[test]
    fn a_rollout_wave_is_taken_only_by_the_hosts_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let key = OperatorKey::generate();
        let canary = HostFacts::new("web-1");
        let other = HostFacts::new("web-2");
        for folder in ["canary", "other"] {
            std::fs::create_dir(dir.path().join(folder)).unwrap();
        }
        let at_canary = state(&dir.path().join("canary"), &[]);
        let at_other = state(&dir.path().join("other"), &[]);
        let one = SignedBundle::sign(&content(&key, 1, FLEET), &key);
        for (desired, host) in [(&at_canary, &canary), (&at_other, &other)] {
            assert_eq!(desired.offer(&one, host), Ok(Accepted::New));
        }
        let mut wave = content(&key, 2, FLEET);
        wave.rollout = Some(remote_agents_ops::bundle::RolloutScope {
            rollout: "staged".into(),
            wave: "canary".into(),
            index: 1,
            waves: 2,
            hosts: vec!["web-1".into()],
            rollback: false,
        });
        let wave = SignedBundle::sign(&wave, &key);
        assert_eq!(at_canary.offer(&wave, &canary), Ok(Accepted::New));
        assert_eq!(at_canary.generation(), 2);
        // The host the wave leaves out keeps generation 1, with no refusal on record.
        assert_eq!(at_other.offer(&wave, &other), Ok(Accepted::OutsideWave));
        assert_eq!(at_other.generation(), 1);
        assert_eq!(at_other.history().unwrap().len(), 1);
        // A wave signed differently (its host list edited) does not verify.
        let mut forged = wave.clone();
        let mut claimed = forged.peek().unwrap();
        claimed.rollout.as_mut().unwrap().hosts.push("web-2".into());
        forged.content = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            serde_json::to_vec(&claimed).unwrap(),
        );
        assert!(matches!(
            at_other.offer(&forged, &other),
            Err(Refusal::Bundle(BundleError::Unauthentic))
        ));
        assert_eq!(at_other.generation(), 1);
    }

    #[test]
    fn declared_operators_decide_who_signs_and_who_commands() {
        let dir = tempfile::tempdir().unwrap();
        let alice = OperatorKey::generate();
        let mallory = OperatorKey::generate();
        let reader = OperatorKey::generate();
        let host = HostFacts::new("web-1").with_tag("web");
        let desired = state(dir.path(), &[]);
        let text = with_operators(&[
            ("alice", &alice, ""),
            ("reader", &reader, ", allow: [read], target: \"tag:db\""),
        ]);
        // First use: the signer must be one of the operators the bundle declares.
        let by_mallory = SignedBundle::sign(&content(&mallory, 1, &text), &mallory);
        assert!(matches!(
            desired.offer(&by_mallory, &host),
            Err(Refusal::UntrustedSigner { .. })
        ));
        let by_alice = SignedBundle::sign(&content(&alice, 1, &text), &alice);
        assert_eq!(desired.offer(&by_alice, &host), Ok(Accepted::New));
        // From now on the applied operators judge, even a bundle that declares mallory.
        let takeover = with_operators(&[("mallory", &mallory, "")]);
        let by_mallory = SignedBundle::sign(&content(&mallory, 2, &takeover), &mallory);
        assert!(matches!(
            desired.offer(&by_mallory, &host),
            Err(Refusal::UntrustedSigner { .. })
        ));
        // Commands: deny by default, per capability and per host.
        assert!(
            desired
                .authorize(Some(&alice.public_bytes()), Capability::Exec, &host)
                .is_ok()
        );
        assert!(desired.authorize(None, Capability::Read, &host).is_err());
        assert!(
            desired
                .authorize(Some(&mallory.public_bytes()), Capability::Read, &host)
                .is_err()
        );
        let refused = desired
            .authorize(Some(&reader.public_bytes()), Capability::Read, &host)
            .unwrap_err();
        assert!(refused.contains("tag:db"), "{refused}");
        let db = HostFacts::new("db-1").with_tag("db");
        assert!(
            desired
                .authorize(Some(&reader.public_bytes()), Capability::Read, &db)
                .is_ok()
        );
        assert!(
            desired
                .authorize(Some(&reader.public_bytes()), Capability::Exec, &db)
                .is_err()
        );
    }

    /// Issue 12: a room member without an operator key left a bundle whose spec was an alias
    /// bomb, and every node parsed it before asking whether it trusts the signer. The spec
    /// texts here cannot be parsed (or are refused when parsed), so any refusal other than
    /// "untrusted" or "stale" shows the node read them.
    #[test]
    fn an_untrusted_or_stale_bundle_is_refused_before_its_spec_is_parsed() {
        let root = OperatorKey::generate();
        let alice = OperatorKey::generate();
        let mallory = OperatorKey::generate();
        let host = HostFacts::new("web-1");
        let bomb = remote_agents_ops::bundle::fixtures::alias_bomb();
        let unreadable = ["]: [ not yaml\n", bomb.as_str()];
        let untrusted = |desired: &DesiredState, generation: u64| {
            for text in unreadable {
                let signed = SignedBundle::sign(&content(&mallory, generation, text), &mallory);
                assert_eq!(
                    desired.offer(&signed, &host),
                    Err(Refusal::UntrustedSigner {
                        signer: mallory.public()
                    }),
                    "{text}"
                );
            }
        };
        // Operators in the node's own config.
        let dir = tempfile::tempdir().unwrap();
        untrusted(&state(dir.path(), &[root.public()]), 1);
        // Operators of the applied spec.
        let dir = tempfile::tempdir().unwrap();
        let desired = state(dir.path(), &[]);
        let text = with_operators(&[("alice", &alice, "")]);
        let two = SignedBundle::sign(&content(&alice, 2, &text), &alice);
        assert_eq!(desired.offer(&two, &host), Ok(Accepted::New));
        untrusted(&desired, 3);
        // A trusted signer's older generation is stale whatever it holds.
        for text in unreadable {
            let old = SignedBundle::sign(&content(&alice, 1, text), &alice);
            assert_eq!(
                desired.offer(&old, &host),
                Err(Refusal::Stale {
                    offered: 1,
                    current: 2
                })
            );
        }
        // With nothing to anchor trust (first use), the spec is read, within the spec crate's
        // limits: the bomb is refused as too large, not expanded.
        let dir = tempfile::tempdir().unwrap();
        let fresh = state(dir.path(), &[]);
        let signed = SignedBundle::sign(&content(&mallory, 1, &bomb), &mallory);
        match fresh.offer(&signed, &host) {
            Err(Refusal::Bundle(BundleError::Invalid(text))) => {
                assert!(text.contains("too-large"), "{text}")
            }
            other => panic!("expected a too-large refusal, got {other:?}"),
        }
        assert_eq!(fresh.generation(), 0);
    }

    #[test]
    fn local_operators_override_what_bundles_declare() {
        let dir = tempfile::tempdir().unwrap();
        let root = OperatorKey::generate();
        let alice = OperatorKey::generate();
        let host = HostFacts::new("web-1");
        let desired = state(dir.path(), &[root.public()]);
        let text = with_operators(&[("alice", &alice, "")]);
        let by_alice = SignedBundle::sign(&content(&alice, 1, &text), &alice);
        assert!(matches!(
            desired.offer(&by_alice, &host),
            Err(Refusal::UntrustedSigner { .. })
        ));
        let by_root = SignedBundle::sign(&content(&root, 1, &text), &root);
        assert_eq!(desired.offer(&by_root, &host), Ok(Accepted::New));
    }

    #[test]
    fn a_local_source_makes_a_new_generation_only_when_its_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let local = OperatorKey::generate();
        let alice = OperatorKey::generate();
        let desired = state(dir.path(), &[]);
        // Even a spec that lists other operators applies: a local source is its own authority.
        let text = with_operators(&[("alice", &alice, "")]);
        let files = |text: &str| {
            vec![remote_agents_ops::bundle::SpecFile {
                path: "fleet.yaml".into(),
                text: text.into(),
            }]
        };
        let (first, accepted) = desired
            .apply_local(files(&text), "rev-1".into(), &local)
            .unwrap();
        assert_eq!((first.content.generation, accepted), (1, Accepted::New));
        let (again, accepted) = desired
            .apply_local(files(&text), "rev-2".into(), &local)
            .unwrap();
        assert_eq!((again.content.generation, accepted), (1, Accepted::Current));
        let changed = text.replace("web-1", "web-2");
        let (next, accepted) = desired
            .apply_local(files(&changed), "rev-3".into(), &local)
            .unwrap();
        assert_eq!((next.content.generation, accepted), (2, Accepted::New));
        assert!(
            next.signed.verify().is_ok(),
            "the stored bundle stays verifiable"
        );
        let broken = changed.replace("hosts:", "hostz:");
        assert!(matches!(
            desired.apply_local(files(&broken), "bad".into(), &local),
            Err(Refusal::Bundle(BundleError::Invalid(_)))
        ));
        assert_eq!(desired.generation(), 2, "an invalid spec changes nothing");
    }

    #[test]
    fn an_open_fleet_accepts_any_signer_and_any_caller() {
        let dir = tempfile::tempdir().unwrap();
        let anyone = OperatorKey::generate();
        let host = HostFacts::new("web-1");
        let desired = state(dir.path(), &[]);
        let signed = SignedBundle::sign(&content(&anyone, 1, FLEET), &anyone);
        assert_eq!(desired.offer(&signed, &host), Ok(Accepted::New));
        assert!(desired.authorize(None, Capability::Exec, &host).is_ok());
    }
}
