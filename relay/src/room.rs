//! Rooms: who is present (peer id → the connection's outbox) and the retained blobs. Locks are
//! held only to look up or change this state, never across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use remote_agents_protocol::frame::{PeerId, RETAINED_KEYS_PER_ROOM, RETAINED_PER_KEY};

use crate::outbox::Outbox;

pub(crate) struct Member {
    pub connection: u64,
    pub outbox: Arc<Outbox>,
}

#[derive(Default)]
struct RetainedKey {
    last_seq: u64,
    blobs: VecDeque<(u64, Bytes)>,
}

#[derive(Default)]
pub(crate) struct RoomState {
    pub members: HashMap<PeerId, Member>,
    retained: HashMap<Bytes, RetainedKey>,
}

/// The retained store of this room already holds the maximum number of keys.
#[derive(Debug)]
pub(crate) struct RetainedFull;

impl RoomState {
    pub(crate) fn is_unused(&self) -> bool {
        self.members.is_empty() && self.retained.is_empty()
    }

    /// Keeps `blob` under `key`, dropping the oldest blob beyond the newest four.
    pub(crate) fn retain(&mut self, key: &[u8], blob: &[u8]) -> Result<u64, RetainedFull> {
        if !self.retained.contains_key(key) && self.retained.len() >= RETAINED_KEYS_PER_ROOM {
            return Err(RetainedFull);
        }
        // Copy key and blob out of the received message so the store never pins a connection's
        // read buffer.
        let entry = self
            .retained
            .entry(Bytes::copy_from_slice(key))
            .or_default();
        entry.last_seq += 1;
        entry
            .blobs
            .push_back((entry.last_seq, Bytes::copy_from_slice(blob)));
        while entry.blobs.len() > RETAINED_PER_KEY {
            entry.blobs.pop_front();
        }
        Ok(entry.last_seq)
    }

    /// The kept blobs under `key`, oldest first.
    pub(crate) fn retained(&self, key: &[u8]) -> Vec<(u64, Bytes)> {
        self.retained
            .get(key)
            .map(|entry| entry.blobs.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[derive(Default)]
pub(crate) struct Room {
    state: Mutex<RoomState>,
}

impl Room {
    pub(crate) fn lock(&self) -> MutexGuard<'_, RoomState> {
        // Room state stays consistent between statements, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_four_blobs_per_key_with_increasing_seq() {
        let mut room = RoomState::default();
        for index in 1..=6u8 {
            assert_eq!(room.retain(b"desired", &[index]).unwrap(), index as u64);
        }
        let kept = room.retained(b"desired");
        let seqs: Vec<u64> = kept.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [3, 4, 5, 6]);
        assert_eq!(kept[0].1, Bytes::from_static(&[3]));
        assert!(room.retained(b"other").is_empty());
    }

    #[test]
    fn refuses_a_new_key_beyond_the_per_room_limit() {
        let mut room = RoomState::default();
        for index in 0..RETAINED_KEYS_PER_ROOM {
            room.retain(index.to_string().as_bytes(), b"x").unwrap();
        }
        assert!(room.retain(b"one more", b"x").is_err());
        assert!(room.retain(b"0", b"y").is_ok());
    }
}
