//! The frame codec: what the relay decodes from any connection and a node from the relay.
//! Nothing panics, and a frame that decodes encodes back to the same bytes (the relay forwards
//! frames it decoded, so a lossy decode would change what the receiver sees).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use remote_agents_protocol::frame::{self, Frame, Header, MAX_FRAME_DEFAULT};

fuzz_target!(|data: &[u8]| {
    let _ = Header::decode(data);
    let _ = frame::offending_id(data);
    let _ = Frame::decode_capped(Bytes::copy_from_slice(data), MAX_FRAME_DEFAULT);
    let Ok(decoded) = Frame::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    assert_eq!(
        decoded.encode().as_ref(),
        data,
        "decode then encode changed the frame"
    );
    if let Ok(body) = decoded.body() {
        let _ = format!("{body:?}");
    }
});
