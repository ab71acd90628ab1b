//! Desired-state bundle decoding (`daemon::desired::bundle`): a `SignedBundle` as it arrives
//! from a peer or the relay's retained store (JSON), peeked at and verified; and the same bytes
//! read as bundle content, signed with a test key and verified, so the spec files inside reach
//! the loader the way a signed bundle's do. Nothing panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use remote_agents_ops::bundle::{BundleContent, SignedBundle};
use remote_agents_ops::operator::OperatorKey;

fn key() -> &'static OperatorKey {
    static KEY: OnceLock<OperatorKey> = OnceLock::new();
    KEY.get_or_init(OperatorKey::generate)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = SignedBundle::from_json(data) {
        let _ = bundle.peek();
        let _ = bundle.peek_generation();
        let _ = bundle.verify();
    }
    if let Ok(mut content) = serde_json::from_slice::<BundleContent>(data) {
        content.issuer = key().public();
        let signed = SignedBundle::sign(&content, key());
        let verified = signed.verify();
        if let Ok(verified) = verified {
            assert_eq!(verified.content, content);
            assert_eq!(
                SignedBundle::from_json(&signed.to_json()).ok(),
                Some(signed)
            );
        }
    }
});
