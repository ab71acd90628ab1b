//! The desired-state bundle: a fleet repo's validated spec files, their revision (git commit or
//! content hash) and a monotonic generation, signed by an operator key. What `fleetctl apply`
//! publishes, what nodes verify, persist and reconcile from.

use base64::Engine;
use remote_agents_spec::limits::MAX_TOTAL_BYTES;
use serde::{Deserialize, Serialize};

use crate::operator::{self, OperatorKey};

/// Domain separation for bundle signatures, so no other signed message can pass as a bundle.
const SIGNING_LABEL: &[u8] = b"remote-agents desired-state bundle v1\0";

/// The longest encoded content (base64 of the signed JSON) a node decodes: the largest fleet
/// the spec crate reads ([`MAX_TOTAL_BYTES`] of spec files) with room for JSON escapes and
/// base64. Anything longer is refused before it is decoded.
pub const MAX_ENCODED_BYTES: usize = 3 * MAX_TOTAL_BYTES;

/// One spec file: its path relative to the fleet repo, and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SpecFile {
    pub path: String,
    pub text: String,
}

/// What an operator signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleContent {
    /// The Fleet document's name.
    pub fleet: String,
    /// Monotonic: nodes refuse a generation older than the one they hold.
    pub generation: u64,
    /// The git commit the files came from, or `sha256:<hex>` of their content.
    pub revision: String,
    pub issued_at_ms: u64,
    /// The signer's public key, `ed25519:<base64>`.
    pub issuer: String,
    pub files: Vec<SpecFile>,
    /// Why this generation may be taken inside a closed change window of the applied spec,
    /// signed with the rest (`fleetctl apply --override-window REASON`); nodes audit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_override: Option<String>,
    /// The wave of a rollout this generation belongs to, naming the hosts that may take it;
    /// absent for a plain apply (every host takes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutScope>,
}

/// Which hosts may take a generation a rollout (`kind: Rollout`) published, signed with the
/// rest of the bundle: a node outside it keeps the generation it has, so the wave is enforced
/// by every node, not by the caller that drives the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutScope {
    /// The Rollout document's name.
    pub rollout: String,
    /// The wave's name (`canary`, `wave-2`, `rest`), or `rollback`.
    pub wave: String,
    /// The wave's position (from 1) and how many waves the rollout has.
    pub index: u32,
    pub waves: u32,
    /// The hosts that may take this generation: those of this wave and of the earlier ones; for
    /// a rollback, those that took the new generation.
    pub hosts: Vec<String>,
    /// Whether this generation puts the previous generation's spec back after a halt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
}

impl RolloutScope {
    /// Whether the host named `host` may take the generation.
    pub fn includes(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h == host)
    }
}

/// A bundle as it travels and is stored: the exact signed bytes and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SignedBundle {
    /// Base64 of the JSON of [`BundleContent`], exactly as signed.
    pub content: String,
    /// Base64 of the Ed25519 signature.
    pub signature: String,
}

/// Why a bundle is refused. Every node refuses the same bundles for the same reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is not well-formed: {0}")]
    Malformed(String),
    #[error("bundle signature does not verify against its issuer key (tampered or unsigned)")]
    Unauthentic,
    #[error("bundle spec is invalid:\n{0}")]
    Invalid(String),
    #[error(
        "bundle is too large: {what} is {size} bytes, more than the {limit} allowed; shrink \
         the fleet's spec files"
    )]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
}

/// A bundle whose size is within the limits and whose signature verified against the issuer it
/// names, its spec not parsed yet: enough to decide trust and ordering
/// (the node's `DesiredState::offer`) before a hostile spec costs anything.
#[derive(Debug, Clone)]
pub struct AuthenticBundle {
    pub content: BundleContent,
    pub issuer_key: [u8; 32],
    /// SHA-256 of the signed bytes: identifies this exact bundle.
    pub hash: String,
    pub signed: SignedBundle,
}

/// A bundle whose signature verified and whose spec loaded without errors.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    pub content: BundleContent,
    pub issuer_key: [u8; 32],
    pub model: remote_agents_spec::FleetModel,
    /// SHA-256 of the signed bytes: identifies this exact bundle.
    pub hash: String,
    /// SHA-256 of the spec files alone: equal for two bundles that say the same thing.
    pub spec_hash: String,
    pub signed: SignedBundle,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// SHA-256 over the files, sorted by path, with lengths so no two file sets collide.
pub fn spec_hash(files: &[SpecFile]) -> String {
    let mut sorted: Vec<&SpecFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for file in sorted {
        for part in [file.path.as_bytes(), file.text.as_bytes()] {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part);
        }
    }
    hex::encode(context.finish())
}

impl SignedBundle {
    /// Signs `content` with `key` (whose public key must be `content.issuer`).
    pub fn sign(content: &BundleContent, key: &OperatorKey) -> SignedBundle {
        let bytes = serde_json::to_vec(content).expect("bundle content is plain data");
        let mut message = SIGNING_LABEL.to_vec();
        message.extend_from_slice(&bytes);
        SignedBundle {
            content: b64().encode(&bytes),
            signature: b64().encode(key.sign(&message)),
        }
    }

    /// What the bundle claims (generation, revision, issuer) without checking the signature or
    /// loading the spec: for log lines, never for decisions.
    pub fn peek(&self) -> Option<BundleContent> {
        if self.content.len() > MAX_ENCODED_BYTES {
            return None;
        }
        let bytes = b64().decode(&self.content).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The generation the bundle claims, 0 when unreadable; like [`SignedBundle::peek`] but
    /// without copying the spec files out (a thousand nodes catching up read every retained copy).
    pub fn peek_generation(&self) -> u64 {
        #[derive(Deserialize)]
        struct Generation {
            generation: u64,
        }
        if self.content.len() > MAX_ENCODED_BYTES {
            return 0;
        }
        b64()
            .decode(&self.content)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Generation>(&bytes).ok())
            .map_or(0, |claim| claim.generation)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a signed bundle is plain data")
    }

    pub fn from_json(bytes: &[u8]) -> Result<SignedBundle, BundleError> {
        serde_json::from_slice(bytes).map_err(|e| BundleError::Malformed(e.to_string()))
    }

    /// Checks the signature against the issuer named inside, then loads and validates the
    /// spec. Says nothing about whether the issuer is trusted: that is the node's decision, and
    /// a node makes it on [`SignedBundle::authenticate`] before the spec is parsed.
    pub fn verify(&self) -> Result<VerifiedBundle, BundleError> {
        self.authenticate()?.load()
    }

    /// Checks the sizes and the signature against the issuer named inside, without parsing the
    /// spec files: what a node needs to decide whether it trusts the bundle at all.
    pub fn authenticate(&self) -> Result<AuthenticBundle, BundleError> {
        if self.content.len() > MAX_ENCODED_BYTES {
            return Err(BundleError::TooLarge {
                what: "its encoded content",
                size: self.content.len(),
                limit: MAX_ENCODED_BYTES,
            });
        }
        let bytes = b64()
            .decode(&self.content)
            .map_err(|e| BundleError::Malformed(format!("content is not base64: {e}")))?;
        let signature = b64()
            .decode(&self.signature)
            .map_err(|_| BundleError::Unauthentic)?;
        let content: BundleContent = serde_json::from_slice(&bytes)
            .map_err(|e| BundleError::Malformed(format!("content: {e}")))?;
        let issuer_key = remote_agents_spec::parse_operator_key(&content.issuer)
            .map_err(|problem| BundleError::Malformed(format!("issuer key: {problem}")))?;
        let mut message = SIGNING_LABEL.to_vec();
        message.extend_from_slice(&bytes);
        if !operator::verify(&issuer_key, &message, &signature) {
            return Err(BundleError::Unauthentic);
        }
        let spec_bytes = content
            .files
            .iter()
            .map(|f| f.text.len())
            .fold(0usize, usize::saturating_add);
        if spec_bytes > MAX_TOTAL_BYTES {
            return Err(BundleError::TooLarge {
                what: "its spec files together",
                size: spec_bytes,
                limit: MAX_TOTAL_BYTES,
            });
        }
        Ok(AuthenticBundle {
            hash: sha256_hex(&bytes),
            issuer_key,
            content,
            signed: self.clone(),
        })
    }
}

impl AuthenticBundle {
    /// Loads and validates the spec (bounded by the spec crate's limits).
    pub fn load(self) -> Result<VerifiedBundle, BundleError> {
        let AuthenticBundle {
            content,
            issuer_key,
            hash,
            signed,
        } = self;
        let (model, _warnings) = load_spec(&content.files).map_err(BundleError::Invalid)?;
        Ok(VerifiedBundle {
            spec_hash: spec_hash(&content.files),
            hash,
            issuer_key,
            model,
            content,
            signed,
        })
    }
}

/// Reads spec files into the fleet model as every node does (the spec crate's limits): the
/// model and its warnings, or every error, one `file:line:col: …` diagnostic a line.
pub fn load_spec(
    files: &[SpecFile],
) -> Result<
    (
        remote_agents_spec::FleetModel,
        Vec<remote_agents_spec::Diagnostic>,
    ),
    String,
> {
    let pairs: Vec<(&str, &str)> = files
        .iter()
        .map(|f| (f.path.as_str(), f.text.as_str()))
        .collect();
    let (model, diagnostics) = remote_agents_spec::load(&pairs);
    if remote_agents_spec::has_errors(&diagnostics) {
        let errors: Vec<String> = diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_string())
            .collect();
        return Err(errors.join("\n"));
    }
    Ok((model, diagnostics))
}

/// One accepted generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub generation: u64,
    pub revision: String,
    pub hash: String,
    pub spec_hash: String,
    pub issuer: String,
    pub issued_at_ms: u64,
}

impl From<&VerifiedBundle> for HistoryEntry {
    fn from(bundle: &VerifiedBundle) -> Self {
        HistoryEntry {
            generation: bundle.content.generation,
            revision: bundle.content.revision.clone(),
            hash: bundle.hash.clone(),
            spec_hash: bundle.spec_hash.clone(),
            issuer: bundle.content.issuer.clone(),
            issued_at_ms: bundle.content.issued_at_ms,
        }
    }
}

/// Bundles for tests, here and in the node: a one-host fleet, a bundle content of it, and a
/// YAML alias bomb (kept out of `cfg(test)` so the node's tests share them).
pub mod fixtures {
    use super::*;

    pub const FLEET: &str = "apiVersion: remote-agents.dev/v1\nkind: Fleet\nmetadata: {name: t}\nspec:\n  hosts:\n    - {name: web-1, tags: [web]}\n";

    /// A 650-byte YAML alias bomb (9^9 values once expanded).
    pub fn alias_bomb() -> String {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in 1..9 {
            let items = vec![format!("*a{}", level - 1); 9].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        text
    }

    pub fn content(key: &OperatorKey, generation: u64, text: &str) -> BundleContent {
        let files = vec![SpecFile {
            path: "fleet.yaml".into(),
            text: text.into(),
        }];
        BundleContent {
            fleet: "t".into(),
            generation,
            revision: format!("sha256:{}", spec_hash(&files)),
            issued_at_ms: 1,
            issuer: key.public(),
            files,
            window_override: None,
            rollout: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn a_signed_bundle_verifies_and_any_change_breaks_it() {
        let key = OperatorKey::generate();
        let signed = SignedBundle::sign(&content(&key, 3, FLEET), &key);
        let verified = signed.verify().unwrap();
        assert_eq!(verified.content.generation, 3);
        assert_eq!(verified.issuer_key, key.public_bytes());

        // Tampered content: a different generation under the same signature.
        let mut tampered = content(&key, 4, FLEET);
        tampered.issuer = key.public();
        let forged = SignedBundle {
            content: b64().encode(serde_json::to_vec(&tampered).unwrap()),
            signature: signed.signature.clone(),
        };
        assert_eq!(forged.verify().unwrap_err(), BundleError::Unauthentic);

        // Unsigned.
        let unsigned = SignedBundle {
            content: signed.content.clone(),
            signature: String::new(),
        };
        assert_eq!(unsigned.verify().unwrap_err(), BundleError::Unauthentic);

        // Signed by someone else than the issuer it names.
        let other = OperatorKey::generate();
        let mut claimed = content(&key, 3, FLEET);
        claimed.issuer = key.public();
        let wrong = SignedBundle::sign(&claimed, &other);
        assert_eq!(wrong.verify().unwrap_err(), BundleError::Unauthentic);
    }

    #[test]
    fn an_invalid_spec_is_refused_with_its_diagnostics() {
        let key = OperatorKey::generate();
        let broken = FLEET.replace("hosts:", "hostz:");
        let signed = SignedBundle::sign(&content(&key, 1, &broken), &key);
        match signed.verify() {
            Err(BundleError::Invalid(text)) => assert!(text.contains("hostz"), "{text}"),
            other => panic!("expected an invalid spec, got {other:?}"),
        }
    }

    #[test]
    fn an_oversized_bundle_is_refused_before_it_is_decoded_or_parsed() {
        // Longer than any bundle may be: refused on its length, not decoded (it would decode,
        // and then fail as malformed JSON).
        let huge = SignedBundle {
            content: "A".repeat(MAX_ENCODED_BYTES + 4),
            signature: String::new(),
        };
        assert!(
            matches!(
                huge.verify(),
                Err(BundleError::TooLarge {
                    what: "its encoded content",
                    ..
                })
            ),
            "{:?}",
            huge.verify().err()
        );
        assert_eq!(huge.peek_generation(), 0);
        // Signed and within the encoded limit, but more spec text than a fleet may have: refused
        // before the spec is parsed (it is not YAML; parsed, it would be invalid).
        let key = OperatorKey::generate();
        let text = format!("]: [\n{}", "#".repeat(MAX_TOTAL_BYTES));
        let signed = SignedBundle::sign(&content(&key, 1, &text), &key);
        assert!(signed.content.len() <= MAX_ENCODED_BYTES);
        let refusal = signed.verify().unwrap_err();
        assert!(
            matches!(
                refusal,
                BundleError::TooLarge {
                    what: "its spec files together",
                    ..
                }
            ),
            "{refusal:?}"
        );
        assert!(refusal.to_string().contains("shrink"), "{refusal}");
    }

    #[test]
    fn an_alias_bomb_in_a_bundle_is_refused_as_invalid_not_expanded() {
        let key = OperatorKey::generate();
        let signed = SignedBundle::sign(&content(&key, 1, &alias_bomb()), &key);
        match signed.verify() {
            Err(BundleError::Invalid(text)) => assert!(text.contains("too-large"), "{text}"),
            other => panic!("expected a too-large refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_spec_hash_ignores_file_order_but_not_content() {
        let a = SpecFile {
            path: "a.yaml".into(),
            text: "x".into(),
        };
        let b = SpecFile {
            path: "b.yaml".into(),
            text: "y".into(),
        };
        assert_eq!(
            spec_hash(&[a.clone(), b.clone()]),
            spec_hash(&[b.clone(), a.clone()])
        );
        let c = SpecFile {
            path: "b.yaml".into(),
            text: "z".into(),
        };
        assert_ne!(spec_hash(&[a.clone(), b]), spec_hash(&[a, c]));
    }
}
