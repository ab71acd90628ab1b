//! What a node decodes once a frame decrypted: the message envelope and the announcement
//! (postcard), and a retained blob opened with the room key. Nothing panics, and a message that
//! decodes survives an encode/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use remote_agents_protocol::blob;
use remote_agents_protocol::message::{Announcement, Envelope};
use remote_agents_protocol::psk::Psk;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        let again = Envelope::decode(&envelope.encode()).expect("an encoded envelope decodes");
        assert_eq!(again, envelope);
    }
    if let Ok(announcement) = Announcement::decode(data) {
        let again =
            Announcement::decode(&announcement.encode()).expect("an encoded announcement decodes");
        assert_eq!(again, announcement);
    }
    let psk = Psk::from_bytes(&[7u8; 32]).expect("a 32-byte room key");
    let _ = blob::open(&psk, b"desired", data);
});
