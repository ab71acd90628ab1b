//! Cluster mode (`--cluster nats://…`): several relay instances share rooms through NATS. Each
//! instance knows which peers the others hold (presence among instances), sends frames for a
//! peer on another instance over that peer's NATS subject, evicts a local connection when a
//! newer one with the same peer id joins elsewhere, and keeps retained blobs in a JetStream
//! key-value bucket, so they outlive any instance.
//!
//! Subjects (every instance of one cluster shares the NATS account):
//! - `remote-agents.control`: presence among instances: `HEARTBEAT` every second, `HELLO` from a
//!   starting instance, `JOIN`/`LEAVE` of local peers, `GOODBYE` from one shutting down. An
//!   instance not heard for [`INSTANCE_DEAD_AFTER`] is dead: its peers leave the room for
//!   everyone else.
//! - `remote-agents.instance.<id>`: what is sent to one instance: the `JOIN`s answering its
//!   `HELLO`, and `CREDIT` for frames it sent.
//! - `remote-agents.peer.<room>.<peer>.<from-instance>`: frames for `peer`, subscribed by the
//!   instance that holds it. Bodies stay ciphertext; the relay still reads only the header.
//!
//! Flow control: NATS core drops messages a slow subscriber cannot take, so a sending instance
//! holds a window of [`WINDOW_KIB`] KiB per remote peer and the receiving instance returns
//! credit as it queues the frames for its peer; a receiver that stops reading stalls its
//! senders exactly as on one instance (and is cut off after `slow_reader_timeout`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use async_nats::jetstream::kv;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use remote_agents_protocol::frame::{Header, PeerId, RETAINED_PER_KEY, RoomId};
use tokio::sync::{Semaphore, mpsc};

use crate::outbox::Outbox;
use crate::{Relay, RelayConfig};

/// Prefix of every subject of the cluster.
const SUBJECT_PREFIX: &str = "remote-agents";
/// The JetStream key-value bucket of retained blobs.
const RETAINED_BUCKET: &str = "remote-agents-retained";
/// How often an instance tells the others it is alive.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// An instance not heard for this long is dead, and its peers have left.
pub(crate) const INSTANCE_DEAD_AFTER: Duration = Duration::from_secs(3);
/// How long a starting instance listens to the others' answers to its `HELLO` before it serves,
/// so the first `WELCOME` it sends already lists the peers on other instances.
const GATHER_PRESENCE: Duration = Duration::from_millis(500);
/// KiB of frames one instance may have in flight to one remote peer before it waits for credit.
const WINDOW_KIB: u32 = 32 * 1024;
/// The receiver returns credit once this much has accumulated for one sender.
const CREDIT_BATCH_KIB: u32 = WINDOW_KIB / 8;
/// NATS messages one subscription buffers: enough for the windows of 8 sending instances with
/// frames of 1 KiB or less (each frame costs at least 1 KiB of credit).
const SUBSCRIPTION_CAPACITY: usize = 8 * WINDOW_KIB as usize;

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("connecting to NATS at {url}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error(
        "the NATS server takes messages of at most {max_payload} bytes, less than a frame of \
         {max_frame}: set `max_payload` in its configuration (or lower --max-frame)"
    )]
    PayloadTooSmall {
        max_payload: usize,
        max_frame: usize,
    },
    #[error(
        "opening the JetStream key-value bucket {RETAINED_BUCKET} (is JetStream on? `nats-server -js`)"
    )]
    Bucket(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("subscribing to {subject}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
}

/// Control messages among instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Heartbeat {
        instance: u64,
    },
    Hello {
        instance: u64,
    },
    /// The instance is shutting down: its peers are gone now, not after the heartbeat timeout.
    Goodbye {
        instance: u64,
    },
    Join {
        instance: u64,
        room: RoomId,
        peer: PeerId,
        stamp: u64,
    },
    Leave {
        instance: u64,
        room: RoomId,
        peer: PeerId,
        stamp: u64,
    },
    Credit {
        instance: u64,
        room: RoomId,
        peer: PeerId,
        kib: u32,
    },
}

impl Control {
    fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(1 + 8 + 32 + 16 + 8);
        match *self {
            Control::Heartbeat { instance } => {
                out.put_u8(1);
                out.put_u64(instance);
            }
            Control::Hello { instance } => {
                out.put_u8(2);
                out.put_u64(instance);
            }
            Control::Goodbye { instance } => {
                out.put_u8(6);
                out.put_u64(instance);
            }
            Control::Join {
                instance,
                room,
                peer,
                stamp,
            }
            | Control::Leave {
                instance,
                room,
                peer,
                stamp,
            } => {
                out.put_u8(if matches!(self, Control::Join { .. }) {
                    3
                } else {
                    4
                });
                out.put_u64(instance);
                out.put_slice(&room.0);
                out.put_slice(&peer.0);
                out.put_u64(stamp);
            }
            Control::Credit {
                instance,
                room,
                peer,
                kib,
            } => {
                out.put_u8(5);
                out.put_u64(instance);
                out.put_slice(&room.0);
                out.put_slice(&peer.0);
                out.put_u32(kib);
            }
        }
        out.freeze()
    }

    fn decode(mut bytes: &[u8]) -> Option<Control> {
        if bytes.remaining() < 9 {
            return None;
        }
        let kind = bytes.get_u8();
        let instance = bytes.get_u64();
        let room_and_peer = |bytes: &mut &[u8]| {
            if bytes.remaining() < 48 {
                return None;
            }
            let mut room = [0; 32];
            bytes.copy_to_slice(&mut room);
            let mut peer = [0; 16];
            bytes.copy_to_slice(&mut peer);
            Some((RoomId(room), PeerId(peer)))
        };
        match kind {
            1 => Some(Control::Heartbeat { instance }),
            2 => Some(Control::Hello { instance }),
            6 => Some(Control::Goodbye { instance }),
            3 | 4 => {
                let (room, peer) = room_and_peer(&mut bytes)?;
                if bytes.remaining() < 8 {
                    return None;
                }
                let stamp = bytes.get_u64();
                Some(if kind == 3 {
                    Control::Join {
                        instance,
                        room,
                        peer,
                        stamp,
                    }
                } else {
                    Control::Leave {
                        instance,
                        room,
                        peer,
                        stamp,
                    }
                })
            }
            5 => {
                let (room, peer) = room_and_peer(&mut bytes)?;
                if bytes.remaining() < 4 {
                    return None;
                }
                Some(Control::Credit {
                    instance,
                    room,
                    peer,
                    kib: bytes.get_u32(),
                })
            }
            _ => None,
        }
    }
}

/// A peer held by another instance, as that instance announced it.
#[derive(Debug, Clone, Copy)]
struct RemoteMember {
    instance: u64,
    /// When it joined (unix nanoseconds): of two connections with one peer id, the later wins.
    stamp: u64,
}

/// A peer held here, as announced to the others.
struct LocalMember {
    connection: u64,
    stamp: u64,
    /// The task forwarding what arrives on the peer's subject into its outbox.
    forwarder: tokio::task::AbortHandle,
}

/// The sending side of one remote peer: its subject and the credit left.
struct Link {
    subject: async_nats::Subject,
    credit: Semaphore,
}

#[derive(Default)]
struct Membership {
    /// Ordered by peer id, as a room's local members are, so presence snapshots page by cursor.
    remote: HashMap<RoomId, BTreeMap<PeerId, RemoteMember>>,
    local: HashMap<(RoomId, PeerId), LocalMember>,
    /// When each other instance was last heard.
    instances: HashMap<u64, Instant>,
    links: HashMap<(RoomId, PeerId), Arc<Link>>,
}

impl Membership {
    /// Forgets the sending side of a peer that moved or left; frames still waiting for its
    /// credit give up at once instead of at the stall timeout.
    fn drop_link(&mut self, key: &(RoomId, PeerId)) {
        if let Some(link) = self.links.remove(key) {
            link.credit.close();
        }
    }
}

/// What the relay's rooms tell the cluster, in order.
enum Command {
    Joined {
        room: RoomId,
        peer: PeerId,
        connection: u64,
        stamp: u64,
        outbox: Arc<Outbox>,
    },
    Left {
        room: RoomId,
        peer: PeerId,
        connection: u64,
    },
}

/// One relay instance's link to the cluster.
pub(crate) struct Cluster {
    instance: u64,
    client: async_nats::Client,
    retained: kv::Store,
    membership: Mutex<Membership>,
    commands: mpsc::UnboundedSender<Command>,
    /// Taken by [`Cluster::run`].
    command_receiver: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    /// Woken whenever a remote peer's join is recorded: frames that came before it wait.
    joins: tokio::sync::Notify,
}

/// How long a frame from a peer this instance has not heard join waits for that join. The
/// join travels on the control subject and is handled by another task than the frame (and its
/// sending instance publishes it from another task too), so a newcomer's first frame can come
/// first; delivered first, a subscriber would meet the peer before hearing it join, and the
/// late join would tear the new session down.
const JOIN_WAIT: Duration = Duration::from_millis(500);

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

fn control_subject() -> String {
    format!("{SUBJECT_PREFIX}.control")
}

fn instance_subject(instance: u64) -> String {
    format!("{SUBJECT_PREFIX}.instance.{instance:016x}")
}

fn peer_subject(room: &RoomId, peer: &PeerId, from_instance: u64) -> String {
    format!(
        "{SUBJECT_PREFIX}.peer.{}.{}.{from_instance:016x}",
        room.to_hex(),
        peer.to_hex()
    )
}

/// The key of a room's retained blobs under `key` in the bucket (keys are any bytes; bucket keys
/// are limited to letters, digits and a few marks, so both parts are hex).
fn retained_key(room: &RoomId, key: &[u8]) -> String {
    let mut text = String::with_capacity(66 + 2 * key.len());
    text.push_str(&room.to_hex());
    text.push_str(".k");
    for byte in key {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// KiB of credit a frame costs: at least one, so small frames are bounded in number too.
fn credit_cost(length: usize) -> u32 {
    length.div_ceil(1024).max(1) as u32
}

impl Cluster {
    /// Connects to NATS at `url` (several servers separated by commas), opens the retained
    /// bucket and subscribes to the control subjects.
    pub(crate) async fn connect(
        url: &str,
        config: &RelayConfig,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let client = async_nats::ConnectOptions::new()
            .name("remote-agents-relay")
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            // Keep trying for good once connected: an instance cut off from NATS still serves
            // its own peers and catches up when the server is back.
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(|source| ClusterError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let max_payload = client.server_info().max_payload;
        if max_payload < config.max_frame {
            return Err(ClusterError::PayloadTooSmall {
                max_payload,
                max_frame: config.max_frame,
            });
        }
        let jetstream = jetstream::new(client.clone());
        // The bucket's stream as `create_key_value` would make it, made here because that call
        // first reads the account's info in a shape nats-server 2.9 (Debian's) does not send.
        // Several instances start at once: creating an identical stream is idempotent.
        let stream = jetstream::stream::Config {
            name: format!("KV_{RETAINED_BUCKET}"),
            description: Some("remote-agents relay: retained blobs of every room".to_owned()),
            subjects: vec![format!("$KV.{RETAINED_BUCKET}.>")],
            max_messages_per_subject: RETAINED_PER_KEY as i64,
            max_bytes: i64::try_from(config.retained_bytes_total).unwrap_or(i64::MAX),
            max_message_size: i32::try_from(config.max_frame).unwrap_or(i32::MAX),
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: 1,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        };
        jetstream
            .get_or_create_stream(stream)
            .await
            .map_err(|error| ClusterError::Bucket(Box::new(error)))?;
        let retained = jetstream
            .get_key_value(RETAINED_BUCKET)
            .await
            .map_err(|error| ClusterError::Bucket(Box::new(error)))?;
        let (commands, command_receiver) = mpsc::unbounded_channel();
        Ok(Arc::new(Cluster {
            instance: fastrand::u64(1..),
            client,
            retained,
            membership: Mutex::new(Membership::default()),
            commands,
            command_receiver: Mutex::new(Some(command_receiver)),
            joins: tokio::sync::Notify::new(),
        }))
    }

    fn membership(&self) -> MutexGuard<'_, Membership> {
        self.membership
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Subscribes, says hello, and gathers the others' peers for a moment; then returns the task
    /// that keeps presence in step until the relay stops.
    pub(crate) async fn start(
        self: &Arc<Self>,
        relay: Arc<Relay>,
    ) -> Result<tokio::task::JoinHandle<()>, ClusterError> {
        let subscribe = |subject: String| async move {
            self.client
                .subscribe(subject.clone())
                .await
                .map_err(|source| ClusterError::Subscribe { subject, source })
        };
        let control = subscribe(control_subject()).await?;
        let direct = subscribe(instance_subject(self.instance)).await?;
        let commands = self
            .command_receiver
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take()
            .expect("the cluster task starts once");
        let task = tokio::spawn(self.clone().run(relay, control, direct, commands));
        self.publish_control(
            control_subject(),
            Control::Hello {
                instance: self.instance,
            },
        )
        .await;
        let _ = self.client.flush().await;
        tokio::time::sleep(GATHER_PRESENCE).await;
        tracing::info!(
            instance = format!("{:016x}", self.instance),
            "joined the relay cluster"
        );
        Ok(task)
    }

    async fn publish_control(&self, subject: String, message: Control) {
        if let Err(error) = self.client.publish(subject, message.encode()).await {
            tracing::warn!(%error, "publishing to the cluster failed");
        }
    }

    /// The loop of one instance's presence: control messages, the rooms' joins and leaves in
    /// order, heartbeats, and dead instances.
    async fn run(
        self: Arc<Self>,
        relay: Arc<Relay>,
        mut control: async_nats::Subscriber,
        mut direct: async_nats::Subscriber,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
        loop {
            tokio::select! {
                Some(message) = control.next() => {
                    if let Some(control) = Control::decode(&message.payload) {
                        self.on_control(&relay, control).await;
                    }
                }
                Some(message) = direct.next() => {
                    if let Some(control) = Control::decode(&message.payload) {
                        self.on_control(&relay, control).await;
                    }
                }
                Some(command) = commands.recv() => self.on_command(&relay, command).await,
                _ = heartbeat.tick() => {
                    self.publish_control(control_subject(), Control::Heartbeat {
                        instance: self.instance,
                    })
                    .await;
                    self.forget_dead_instances(&relay, Instant::now());
                }
                else => return,
            }
        }
    }

    async fn on_command(&self, relay: &Arc<Relay>, command: Command) {
        match command {
            Command::Joined {
                room,
                peer,
                connection,
                stamp,
                outbox,
            } => {
                let subject = format!(
                    "{SUBJECT_PREFIX}.peer.{}.{}.*",
                    room.to_hex(),
                    peer.to_hex()
                );
                let subscriber = match self.client.subscribe(subject).await {
                    Ok(subscriber) => subscriber,
                    Err(error) => {
                        tracing::warn!(%error, %room, %peer, "cannot receive frames from other instances for this peer");
                        return;
                    }
                };
                let forwarder = tokio::spawn(forward_to_local_peer(
                    relay.clone(),
                    self.client.clone(),
                    room,
                    peer,
                    outbox,
                    subscriber,
                ))
                .abort_handle();
                let previous = self.membership().local.insert(
                    (room, peer),
                    LocalMember {
                        connection,
                        stamp,
                        forwarder,
                    },
                );
                if let Some(previous) = previous {
                    previous.forwarder.abort();
                }
                self.publish_control(
                    control_subject(),
                    Control::Join {
                        instance: self.instance,
                        room,
                        peer,
                        stamp,
                    },
                )
                .await;
            }
            Command::Left {
                room,
                peer,
                connection,
            } => {
                let left = {
                    let mut membership = self.membership();
                    match membership.local.get(&(room, peer)) {
                        Some(member) if member.connection == connection => {
                            membership.local.remove(&(room, peer))
                        }
                        _ => None,
                    }
                };
                if let Some(left) = left {
                    left.forwarder.abort();
                    self.publish_control(
                        control_subject(),
                        Control::Leave {
                            instance: self.instance,
                            room,
                            peer,
                            stamp: left.stamp,
                        },
                    )
                    .await;
                }
            }
        }
    }

    async fn on_control(&self, relay: &Relay, message: Control) {
        match message {
            Control::Heartbeat { instance } if instance != self.instance => {
                let known = self
                    .membership()
                    .instances
                    .insert(instance, Instant::now())
                    .is_some();
                // An instance we did not know (it started before us and missed our hello, or
                // we had given it up for dead): ask for its peers.
                if !known {
                    self.publish_control(
                        instance_subject(instance),
                        Control::Hello {
                            instance: self.instance,
                        },
                    )
                    .await;
                }
            }
            Control::Goodbye { instance } if instance != self.instance => {
                tracing::info!(
                    instance = format!("{instance:016x}"),
                    "a relay instance shut down; its peers have left"
                );
                self.forget_instances(relay, &[instance]);
            }
            Control::Hello { instance } if instance != self.instance => {
                self.membership().instances.insert(instance, Instant::now());
                let joins: Vec<Control> = self
                    .membership()
                    .local
                    .iter()
                    .map(|((room, peer), member)| Control::Join {
                        instance: self.instance,
                        room: *room,
                        peer: *peer,
                        stamp: member.stamp,
                    })
                    .collect();
                for join in joins {
                    self.publish_control(instance_subject(instance), join).await;
                }
            }
            Control::Join {
                instance,
                room,
                peer,
                stamp,
            } if instance != self.instance => {
                self.remote_joined(relay, instance, room, peer, stamp);
            }
            Control::Leave {
                instance,
                room,
                peer,
                stamp,
            } if instance != self.instance => {
                let left = {
                    let mut membership = self.membership();
                    let members = membership.remote.entry(room).or_default();
                    let matches = members
                        .get(&peer)
                        .is_some_and(|member| member.instance == instance && member.stamp == stamp);
                    if matches {
                        members.remove(&peer);
                        if members.is_empty() {
                            membership.remote.remove(&room);
                        }
                        membership.drop_link(&(room, peer));
                    }
                    matches && !membership.local.contains_key(&(room, peer))
                };
                if left {
                    relay.remote_left(room, peer);
                }
            }
            Control::Credit {
                room, peer, kib, ..
            } => {
                let link = self.membership().links.get(&(room, peer)).cloned();
                if let Some(link) = link {
                    link.credit.add_permits(kib as usize);
                }
            }
            _ => {}
        }
    }

    /// Another instance holds `peer` since `stamp`: record it, evict an older local connection
    /// with the same peer id, and tell the room (a `JOIN`, also for a peer that moved).
    fn remote_joined(&self, relay: &Relay, instance: u64, room: RoomId, peer: PeerId, stamp: u64) {
        let newer = |other: &RemoteMember| (stamp, instance) > (other.stamp, other.instance);
        let evict = {
            // Liveness comes from heartbeats only: an instance given up for dead is asked for all
            // its peers when its next heartbeat arrives, not revived by one join.
            let mut membership = self.membership();
            if let Some(local) = membership.local.get(&(room, peer))
                && (local.stamp, self.instance) > (stamp, instance)
            {
                // Ours is the newer connection: theirs is evicted when they hear our join.
                return;
            }
            let members = membership.remote.entry(room).or_default();
            let previous = members.get(&peer).copied();
            if previous.is_some_and(|previous| !newer(&previous)) {
                return;
            }
            members.insert(peer, RemoteMember { instance, stamp });
            membership.drop_link(&(room, peer));
            let local = membership
                .local
                .get(&(room, peer))
                .map(|member| member.connection);
            // A peer that moved (its instance died, it reconnected elsewhere, or a newer connection
            // evicts ours) is announced again, as a rejoin on one relay is: the others forget its
            // old sessions.
            local
        };
        if let Some(connection) = evict {
            relay.evict_for_cluster(room, peer, connection);
        }
        relay.remote_joined(room, peer);
        self.joins.notify_waiters();
    }

    /// Whether `peer` is present in `room`, on this instance or another as far as it knows.
    fn knows(&self, room: &RoomId, peer: &PeerId) -> bool {
        let membership = self.membership();
        membership.local.contains_key(&(*room, *peer))
            || membership
                .remote
                .get(room)
                .is_some_and(|members| members.contains_key(peer))
    }

    /// Waits until `peer`'s join in `room` is recorded, at most [`JOIN_WAIT`] (a peer that has
    /// left since is delivered after it).
    async fn wait_for_join(&self, room: &RoomId, peer: &PeerId) {
        let deadline = tokio::time::Instant::now() + JOIN_WAIT;
        loop {
            let notified = self.joins.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.knows(room, peer) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    fn forget_dead_instances(&self, relay: &Relay, now: Instant) {
        let dead: Vec<u64> = self
            .membership()
            .instances
            .iter()
            .filter(|(_, seen)| now.saturating_duration_since(**seen) >= INSTANCE_DEAD_AFTER)
            .map(|(instance, _)| *instance)
            .collect();
        for instance in &dead {
            tracing::warn!(
                instance = format!("{instance:016x}"),
                "a relay instance went silent; its peers have left"
            );
        }
        self.forget_instances(relay, &dead);
    }

    /// The peers of `dead` instances leave their rooms for the local members.
    fn forget_instances(&self, relay: &Relay, dead: &[u64]) {
        if dead.is_empty() {
            return;
        }
        let gone: Vec<(RoomId, PeerId)> = {
            let mut membership = self.membership();
            for instance in dead {
                membership.instances.remove(instance);
            }
            let mut gone = Vec::new();
            membership.remote.retain(|room, members| {
                members.retain(|peer, member| {
                    let alive = !dead.contains(&member.instance);
                    if !alive {
                        gone.push((*room, *peer));
                    }
                    alive
                });
                !members.is_empty()
            });
            for key in &gone {
                membership.drop_link(key);
            }
            gone.retain(|key| !membership.local.contains_key(key));
            gone
        };
        for (room, peer) in gone {
            relay.remote_left(room, peer);
        }
    }

    /// Tells the others this instance is going away (its connections are being closed), so
    /// its peers leave at once everywhere.
    pub(crate) async fn goodbye(&self) {
        self.publish_control(
            control_subject(),
            Control::Goodbye {
                instance: self.instance,
            },
        )
        .await;
        let _ = self.client.flush().await;
    }

    /// A local peer joined: it is no longer on another instance (which evicts its connection
    /// when it hears the join); announce it and receive its frames from other instances.
    pub(crate) fn local_joined(
        &self,
        room: RoomId,
        peer: PeerId,
        connection: u64,
        outbox: &Arc<Outbox>,
    ) {
        {
            let mut membership = self.membership();
            if let Some(members) = membership.remote.get_mut(&room) {
                members.remove(&peer);
                if members.is_empty() {
                    membership.remote.remove(&room);
                }
            }
            membership.drop_link(&(room, peer));
        }
        let _ = self.commands.send(Command::Joined {
            room,
            peer,
            connection,
            stamp: unix_nanos(),
            outbox: outbox.clone(),
        });
    }

    /// A local connection ended.
    pub(crate) fn local_left(&self, room: RoomId, peer: PeerId, connection: u64) {
        let _ = self.commands.send(Command::Left {
            room,
            peer,
            connection,
        });
    }

    /// The peers of `room` on other instances.
    pub(crate) fn remote_peers(&self, room: &RoomId) -> Vec<PeerId> {
        self.membership()
            .remote
            .get(room)
            .map(|members| members.keys().copied().collect())
            .unwrap_or_default()
    }

    /// How many of the peers of `room` on other instances pass `counted`.
    pub(crate) fn remote_count(&self, room: &RoomId, counted: impl Fn(&PeerId) -> bool) -> usize {
        self.membership().remote.get(room).map_or(0, |members| {
            members.keys().filter(|peer| counted(peer)).count()
        })
    }

    /// The first `limit` peers of `room` on other instances ordered after `after` that pass
    /// `kept`.
    pub(crate) fn remote_page(
        &self,
        room: &RoomId,
        after: &PeerId,
        limit: usize,
        kept: impl Fn(&PeerId) -> bool,
    ) -> Vec<PeerId> {
        use std::ops::Bound;
        self.membership()
            .remote
            .get(room)
            .map_or_else(Vec::new, |members| {
                members
                    .range((Bound::Excluded(*after), Bound::Unbounded))
                    .map(|(peer, _)| *peer)
                    .filter(|peer| kept(peer))
                    .take(limit)
                    .collect()
            })
    }

    /// Whether another instance holds `peer` in `room`.
    pub(crate) fn is_remote(&self, room: &RoomId, peer: &PeerId) -> bool {
        self.membership()
            .remote
            .get(room)
            .is_some_and(|members| members.contains_key(peer))
    }

    fn link(&self, room: RoomId, peer: PeerId) -> Option<Arc<Link>> {
        let mut membership = self.membership();
        if !membership
            .remote
            .get(&room)
            .is_some_and(|members| members.contains_key(&peer))
        {
            return None;
        }
        let instance = self.instance;
        Some(
            membership
                .links
                .entry((room, peer))
                .or_insert_with(|| {
                    Arc::new(Link {
                        subject: peer_subject(&room, &peer, instance).into(),
                        credit: Semaphore::new(WINDOW_KIB as usize),
                    })
                })
                .clone(),
        )
    }

    /// Sends a stamped frame to `peer` on another instance. `None` when no instance holds it;
    /// `Some(false)` when it could not be sent (the receiver stalled past `stall`, or NATS is
    /// gone).
    pub(crate) async fn forward(
        &self,
        room: RoomId,
        peer: PeerId,
        bytes: Bytes,
        stall: Duration,
    ) -> Option<bool> {
        let link = self.link(room, peer)?;
        let cost = credit_cost(bytes.len());
        match tokio::time::timeout(stall, link.credit.acquire_many(cost)).await {
            Ok(Ok(permit)) => permit.forget(),
            _ => {
                tracing::info!(%room, %peer, "a peer on another instance took nothing for too long; frame dropped");
                return Some(false);
            }
        }
        Some(
            self.client
                .publish(link.subject.clone(), bytes)
                .await
                .is_ok(),
        )
    }

    /// Stores a retained blob; the bucket's revision is its sequence number.
    pub(crate) async fn retain(
        &self,
        room: &RoomId,
        key: &[u8],
        blob: Bytes,
    ) -> Result<u64, String> {
        self.retained
            .put(retained_key(room, key), blob)
            .await
            .map_err(|error| format!("retained store refused the blob: {error}"))
    }

    /// The newest blobs kept under `key`, oldest first.
    pub(crate) async fn retained(
        &self,
        room: &RoomId,
        key: &[u8],
    ) -> Result<Vec<(u64, Bytes)>, String> {
        let mut history = self
            .retained
            .history(retained_key(room, key))
            .await
            .map_err(|error| format!("retained store unavailable: {error}"))?;
        let mut blobs = Vec::new();
        while let Some(entry) = history.next().await {
            let entry = entry.map_err(|error| format!("retained store unavailable: {error}"))?;
            if entry.operation == kv::Operation::Put {
                blobs.push((entry.revision, entry.value));
            }
        }
        let skip = blobs.len().saturating_sub(RETAINED_PER_KEY);
        blobs.drain(..skip);
        Ok(blobs)
    }
}

/// Queues what other instances send to one local peer, in order, and returns their credit.
async fn forward_to_local_peer(
    relay: Arc<Relay>,
    client: async_nats::Client,
    room: RoomId,
    peer: PeerId,
    outbox: Arc<Outbox>,
    mut subscriber: async_nats::Subscriber,
) {
    // Credit owed to each sending instance, by its id.
    let mut owed: HashMap<u64, u32> = HashMap::new();
    let mut next = subscriber.next().await;
    while let Some(message) = next {
        let from = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|text| u64::from_str_radix(text, 16).ok());
        let cost = credit_cost(message.payload.len());
        let length = message.payload.len() as u64;
        // The sending instance stamped `from`: subscribers here hear of that peer's join
        // before its frame, as on a single relay.
        if let (Ok(header), Some(cluster)) = (Header::decode(&message.payload), &relay.cluster) {
            cluster.wait_for_join(&room, &header.from).await;
            relay.flush_presence_before_remote_frame(room, &header.from);
        }
        if !outbox
            .push_wait(
                message.payload,
                relay.config.queue_budget,
                relay.config.slow_reader_timeout,
            )
            .await
        {
            return;
        }
        relay
            .metrics
            .frames_forwarded
            .fetch_add(1, Ordering::Relaxed);
        relay
            .metrics
            .bytes_forwarded
            .fetch_add(length, Ordering::Relaxed);
        let pending = from.map_or(0, |from| {
            let owed = owed.entry(from).or_default();
            *owed += cost;
            *owed
        });
        // Credit goes back in batches while frames keep coming, and all of it as soon as
        // nothing more is waiting, so a sender is never left short by a batch that will not fill.
        next = match subscriber.next().now_or_never() {
            Some(following) => {
                if pending >= CREDIT_BATCH_KIB {
                    return_credit(&client, room, peer, &mut owed).await;
                }
                following
            }
            None => {
                return_credit(&client, room, peer, &mut owed).await;
                subscriber.next().await
            }
        };
    }
}

async fn return_credit(
    client: &async_nats::Client,
    room: RoomId,
    peer: PeerId,
    owed: &mut HashMap<u64, u32>,
) {
    for (sender, kib) in owed.drain() {
        let credit = Control::Credit {
            instance: sender,
            room,
            peer,
            kib,
        };
        if let Err(error) = client
            .publish(instance_subject(sender), credit.encode())
            .await
        {
            tracing::debug!(%error, "returning credit failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip() {
        let room = RoomId([7; 32]);
        let peer = PeerId([9; 16]);
        for message in [
            Control::Heartbeat { instance: 1 },
            Control::Hello { instance: 2 },
            Control::Goodbye { instance: 6 },
            Control::Join {
                instance: 3,
                room,
                peer,
                stamp: 44,
            },
            Control::Leave {
                instance: 4,
                room,
                peer,
                stamp: 45,
            },
            Control::Credit {
                instance: 5,
                room,
                peer,
                kib: 2048,
            },
        ] {
            assert_eq!(Control::decode(&message.encode()), Some(message));
        }
        assert_eq!(Control::decode(&[3, 0, 0]), None);
        assert_eq!(Control::decode(&[9; 9]), None);
    }

    #[test]
    fn retained_keys_are_hex_under_the_room() {
        let room = RoomId([0xab; 32]);
        let key = retained_key(&room, b"desired\x00");
        assert!(key.starts_with(&"ab".repeat(32)));
        assert!(key.ends_with(".k6465736972656400"));
        assert!(retained_key(&room, b"").ends_with(".k"));
    }

    #[test]
    fn every_frame_costs_at_least_one_kib_of_credit() {
        assert_eq!(credit_cost(0), 1);
        assert_eq!(credit_cost(42), 1);
        assert_eq!(credit_cost(1024), 1);
        assert_eq!(credit_cost(64 * 1024 + 42), 65);
    }
}
