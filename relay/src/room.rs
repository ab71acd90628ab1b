//! Rooms: who is present (peer id → the connection's outbox), who subscribed to presence and
//! the changes not yet sent to them, and the retained blobs. Locks are held only to look up or
//! change this state, never across an await.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use remote_agents_protocol::frame::{
    Frame, PRESENCE_PAGE, PeerId, PresenceChange, PresencePage, RETAINED_KEYS_PER_ROOM,
    RETAINED_PER_KEY,
};

use crate::outbox::Outbox;

pub(crate) struct Member {
    pub connection: u64,
    pub outbox: Arc<Outbox>,
    /// Whether this connection asked for the room's presence changes (`PRESENCE_GET` with the
    /// subscribe flag). Only subscribers hear of joins and leaves: a room of N headless nodes
    /// reconnecting costs O(N) frames, not the O(N²) of telling everyone about everyone.
    pub subscribed: bool,
}

#[derive(Default)]
struct RetainedKey {
    last_seq: u64,
    blobs: VecDeque<(u64, Bytes)>,
}

#[derive(Default)]
pub(crate) struct RoomState {
    /// Ordered by peer id so a snapshot is paged by a cursor (the last id of the previous page).
    pub members: BTreeMap<PeerId, Member>,
    /// How many members are subscribed; while none is, changes are not even recorded.
    pub subscribers: usize,
    /// Joins and leaves since the last batch went out, in the order they happened.
    pub pending: Vec<PresenceChange>,
    /// The peers named in `pending`: a frame from one of them flushes the batch first, so a
    /// subscriber always hears of a (re)join before the newcomer's first frame (its handshake
    /// would otherwise arrive first and be torn down by the late join).
    pending_peers: HashSet<PeerId>,
    retained: HashMap<Bytes, RetainedKey>,
    /// Bytes of the retained keys and blobs, counted toward the room's and the relay's caps.
    retained_bytes: usize,
    /// When the last peer left (the room expires `retained_ttl` later); `None` while occupied.
    pub empty_since: Option<Instant>,
}

/// Why a blob was not kept.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RetainedFull {
    /// The room already keeps the maximum number of keys.
    Keys,
    /// The room's retained bytes would exceed its cap.
    RoomBytes,
    /// The relay's retained bytes would exceed its cap.
    TotalBytes,
}

impl RetainedFull {
    pub(crate) fn message(&self) -> &'static str {
        match self {
            RetainedFull::Keys => "retained store full: the room keeps the maximum number of keys",
            RetainedFull::RoomBytes => {
                "retained store full: the room's retained bytes are at their cap"
            }
            RetainedFull::TotalBytes => {
                "retained store full: the relay's retained bytes are at their cap"
            }
        }
    }
}

/// The caps a put is held to, and the relay-wide counter of retained bytes.
pub(crate) struct RetainLimits<'relay> {
    pub bytes_per_room: usize,
    pub bytes_total: usize,
    pub total: &'relay AtomicU64,
}

impl RoomState {
    /// Records a join or leave for the next batch; returns true when the room has just become
    /// dirty (the caller queues it for the flusher).
    pub(crate) fn record(&mut self, change: PresenceChange) -> bool {
        if self.subscribers == 0 {
            return false;
        }
        let (PresenceChange::Joined(peer) | PresenceChange::Left(peer)) = change;
        self.pending_peers.insert(peer);
        self.pending.push(change);
        self.pending.len() == 1
    }

    /// Sends the pending batch now if it names `sender` (see `pending_peers`); returns the
    /// frames queued.
    pub(crate) fn flush_before_frame_from(&mut self, sender: &PeerId) -> u64 {
        if self.pending_peers.contains(sender) {
            self.flush_presence()
        } else {
            0
        }
    }

    /// Marks `peer` subscribed (idempotent).
    pub(crate) fn subscribe(&mut self, peer: &PeerId) {
        if let Some(member) = self.members.get_mut(peer)
            && !member.subscribed
        {
            member.subscribed = true;
            self.subscribers += 1;
        }
    }

    /// One snapshot page for `peer`: the members after `after` (not `peer` itself), at most
    /// [`PRESENCE_PAGE`], and whether more follow. `remote` holds the room's peers on other
    /// cluster instances ordered after `after`, neither `peer` nor a local member, at least
    /// a page and one of them when there are that many; they are merged in peer-id order.
    pub(crate) fn snapshot_page(
        &self,
        peer: &PeerId,
        after: &PeerId,
        remote: &[PeerId],
    ) -> PresencePage {
        use std::ops::Bound;
        let local = self
            .members
            .range((Bound::Excluded(*after), Bound::Unbounded))
            .map(|(id, _)| *id);
        let mut ids = merge_ascending(local, remote.iter().copied()).filter(|id| id != peer);
        let changes: Vec<PresenceChange> = ids
            .by_ref()
            .take(PRESENCE_PAGE)
            .map(PresenceChange::Joined)
            .collect();
        PresencePage {
            snapshot: true,
            more: ids.next().is_some(),
            changes,
        }
    }

    /// Sends the pending changes to every subscriber as `PRESENCE` frames of at most
    /// [`PRESENCE_PAGE`] changes (the same bytes to each); returns the frames queued.
    pub(crate) fn flush_presence(&mut self) -> u64 {
        let pending = std::mem::take(&mut self.pending);
        self.pending_peers.clear();
        if pending.is_empty() || self.subscribers == 0 {
            return 0;
        }
        let frames: Vec<bytes::Bytes> = pending
            .chunks(PRESENCE_PAGE)
            .map(|chunk| {
                let page = PresencePage {
                    snapshot: false,
                    more: false,
                    changes: chunk.to_vec(),
                };
                Frame::presence(PeerId::ZERO, 0, &page).encode()
            })
            .collect();
        let mut queued = 0;
        for member in self.members.values().filter(|member| member.subscribed) {
            for frame in &frames {
                member.outbox.push_now(frame.clone());
                queued += 1;
            }
        }
        queued
    }

    pub(crate) fn is_unused(&self) -> bool {
        self.members.is_empty() && self.retained.is_empty()
    }

    /// Keeps `blob` under `key`, dropping the oldest blob beyond the newest four, unless that
    /// would take the room or the relay past its retained-bytes cap.
    pub(crate) fn retain(
        &mut self,
        key: &[u8],
        blob: &[u8],
        limits: &RetainLimits<'_>,
    ) -> Result<u64, RetainedFull> {
        let existing = self.retained.get(key);
        if existing.is_none() && self.retained.len() >= RETAINED_KEYS_PER_ROOM {
            return Err(RetainedFull::Keys);
        }
        // What the put adds (the blob, and the key when it is new) and what it drops (the
        // oldest blob once the key holds four).
        let added = blob.len() + if existing.is_none() { key.len() } else { 0 };
        let dropped = existing
            .filter(|entry| entry.blobs.len() >= RETAINED_PER_KEY)
            .and_then(|entry| entry.blobs.front())
            .map_or(0, |(_, oldest)| oldest.len());
        let room_after = self.retained_bytes + added - dropped.min(self.retained_bytes + added);
        if added > dropped && room_after > limits.bytes_per_room {
            return Err(RetainedFull::RoomBytes);
        }
        if added > dropped {
            let grow = (added - dropped) as u64;
            limits
                .total
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |total| {
                    (total + grow <= limits.bytes_total as u64).then_some(total + grow)
                })
                .map_err(|_| RetainedFull::TotalBytes)?;
        } else {
            limits
                .total
                .fetch_sub((dropped - added) as u64, Ordering::Relaxed);
        }
        self.retained_bytes = room_after;
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

    /// Drops every retained blob; returns the bytes freed (for the relay-wide counter).
    pub(crate) fn clear_retained(&mut self) -> usize {
        self.retained.clear();
        std::mem::take(&mut self.retained_bytes)
    }

    /// The kept blobs under `key`, oldest first.
    pub(crate) fn retained(&self, key: &[u8]) -> Vec<(u64, Bytes)> {
        self.retained
            .get(key)
            .map(|entry| entry.blobs.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Merges two ascending iterators into one ascending iterator.
fn merge_ascending<T: Ord>(
    left: impl Iterator<Item = T>,
    right: impl Iterator<Item = T>,
) -> impl Iterator<Item = T> {
    let mut left = left.peekable();
    let mut right = right.peekable();
    std::iter::from_fn(move || match (left.peek(), right.peek()) {
        (Some(a), Some(b)) if b < a => right.next(),
        (Some(_), _) => left.next(),
        (None, _) => right.next(),
    })
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

    fn unlimited(total: &AtomicU64) -> RetainLimits<'_> {
        RetainLimits {
            bytes_per_room: usize::MAX,
            bytes_total: usize::MAX,
            total,
        }
    }

    #[test]
    fn keeps_the_newest_four_blobs_per_key_with_increasing_seq() {
        let total = AtomicU64::new(0);
        let mut room = RoomState::default();
        for index in 1..=6u8 {
            assert_eq!(
                room.retain(b"desired", &[index], &unlimited(&total))
                    .unwrap(),
                index as u64
            );
        }
        let kept = room.retained(b"desired");
        let seqs: Vec<u64> = kept.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [3, 4, 5, 6]);
        assert_eq!(kept[0].1, Bytes::from_static(&[3]));
        assert!(room.retained(b"other").is_empty());
    }

    #[test]
    fn refuses_a_new_key_beyond_the_per_room_limit() {
        let total = AtomicU64::new(0);
        let limits = unlimited(&total);
        let mut room = RoomState::default();
        for index in 0..RETAINED_KEYS_PER_ROOM {
            room.retain(index.to_string().as_bytes(), b"x", &limits)
                .unwrap();
        }
        assert_eq!(
            room.retain(b"one more", b"x", &limits),
            Err(RetainedFull::Keys)
        );
        assert!(room.retain(b"0", b"y", &limits).is_ok());
    }

    #[test]
    fn retained_bytes_are_capped_per_room_and_in_total_and_replacements_fit() {
        let total = AtomicU64::new(0);
        let limits = RetainLimits {
            bytes_per_room: 100,
            bytes_total: 150,
            total: &total,
        };
        let mut first = RoomState::default();
        // 1 key byte + 4 blobs of 20 = 81.
        for _ in 0..4 {
            first.retain(b"k", &[0; 20], &limits).unwrap();
        }
        assert_eq!(
            first.retain(b"j", &[0; 20], &limits),
            Err(RetainedFull::RoomBytes)
        );
        // A fifth blob under the same key replaces the oldest: the room stays at 81.
        first.retain(b"k", &[1; 20], &limits).unwrap();
        assert_eq!(total.load(Ordering::Relaxed), 81);
        let mut second = RoomState::default();
        second.retain(b"a", &[0; 60], &limits).unwrap();
        assert_eq!(
            second.retain(b"b", &[0; 20], &limits),
            Err(RetainedFull::TotalBytes)
        );
        assert_eq!(total.load(Ordering::Relaxed), 142);
        total.fetch_sub(first.clear_retained() as u64, Ordering::Relaxed);
        assert_eq!(total.load(Ordering::Relaxed), 61);
        second.retain(b"b", &[0; 20], &limits).unwrap();
    }
}
