//! Wires one node: marshal (block sync and ordered delivery), simplex (BFT ordering), the
//! application (propose/verify), the finalizer (apply + persist + publish) and tx gossip.
//!
//! p2p channel layout (same on every node; the network must admit [`max_message_size`]):
//! `0` votes, `1` certificates, `2` simplex resolver, `3` marshal backfill, `4` block
//! broadcast, `5` transaction gossip.

use crate::{
    application::Application,
    block::{Block, MAX_BLOCK_TX_BYTES},
    mempool::{Mempool, SigCache},
    shared::Shared,
    store::{StateStore, StoreError},
    Scheme,
};
use bytes::{BufMut, Bytes};
use cairn_ledger::Genesis;
use commonware_actor::Feedback;
use commonware_broadcast::buffered;
use commonware_codec::{varint::UInt, Buf, EncodeSize, Read, ReadExt, Write};
use commonware_consensus::{
    marshal::{
        self,
        core::{Actor as MarshalActor, Mailbox as MarshalMailbox},
        resolver::p2p as marshal_resolver,
        standard::{Inline, Standard},
        Identifier, Update,
    },
    simplex::{
        self,
        config::{ForwardPolicy, SkipBudget, SkipPolicy},
        elector::RoundRobin,
    },
    types::{Epoch, FixedEpocher, Height, ViewDelta},
    BoundedBlock, Reporter,
};
use commonware_cryptography::{
    certificate::ConstantProvider, ed25519, sha256::Sha256, Digested, Digestible, Signer,
};
use commonware_p2p::{Blocker, Provider, Receiver, Recipients, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{
    buffer::paged::CacheRef, Clock, Handle, Metrics, Quota, Spawner, Storage,
};
use commonware_storage::archive::immutable;
use commonware_utils::{ordered::Set, Acknowledgement, NZDuration, NZUsize, NZU16, NZU32, NZU64};
use futures::{channel::mpsc, StreamExt};
use rand_core::CryptoRng;
use std::{num::NonZeroU64, sync::Arc, time::Duration};
use tracing::{error, info, warn};

/// Namespace for consensus signatures (domain separation from every other signed message).
pub const NAMESPACE: &[u8] = b"cairn/consensus/v1";
/// Epoch length: effectively one epoch until committee rotation lands.
const EPOCH_LENGTH: NonZeroU64 = NZU64!(u64::MAX / 2);
/// Most transactions one gossip message carries.
pub const MAX_GOSSIP_TXS: usize = 512;
/// Rate quota per peer for every channel (messages per second).
pub const CHANNEL_QUOTA: Quota = Quota::per_second(NZU32!(1_024));

/// Largest p2p message a node must accept (a full block plus framing).
pub fn max_message_size() -> u32 {
    (Block::max_encode_size(&()) + 64 * 1024) as u32
}

/// Tunables of one node (all bounded; defaults suit a loopback devnet).
#[derive(Clone, Debug)]
pub struct Config {
    /// Chain identifier (binds the genesis block).
    pub chain_id: String,
    /// Committee members' consensus/p2p public keys.
    pub committee: Vec<ed25519::PublicKey>,
    /// Storage partition prefix (unique per node sharing one storage root).
    pub partition_prefix: String,
    /// Mempool bound in transactions.
    pub mempool_max_txs: usize,
    /// Mempool bound in bytes.
    pub mempool_max_bytes: usize,
    /// Longest a leader waits for transactions before proposing an empty block.
    pub empty_block_interval_ms: u64,
    /// Time to wait for a leader's proposal before voting to skip the view.
    pub leader_timeout_ms: u64,
    /// Time to wait for a notarization to certify.
    pub certification_timeout_ms: u64,
    /// Interval between gossip flushes of newly admitted transactions.
    pub gossip_interval_ms: u64,
}

impl Config {
    /// Defaults for a node of `committee` on a loopback network.
    pub fn new(
        chain_id: &str,
        committee: Vec<ed25519::PublicKey>,
        partition_prefix: String,
    ) -> Self {
        Self {
            chain_id: chain_id.to_string(),
            committee,
            partition_prefix,
            mempool_max_txs: 100_000,
            mempool_max_bytes: 64 * 1024 * 1024,
            empty_block_interval_ms: 500,
            leader_timeout_ms: 2_000,
            certification_timeout_ms: 3_000,
            gossip_interval_ms: 5,
        }
    }
}

/// Consensus timeouts, derived so simplex's ordering invariants always hold
/// (leader < certification < skip, retry < skip) whatever the configured values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Leader timeout.
    pub leader_ms: u64,
    /// Certification timeout.
    pub certification_ms: u64,
    /// Re-broadcast interval while stuck.
    pub retry_ms: u64,
    /// Timeout after which an unresponsive leader's views are skipped.
    pub skip_ms: u64,
}

impl Timeouts {
    /// Derives valid timeouts from the configured leader/certification values.
    pub fn derive(leader_ms: u64, certification_ms: u64) -> Self {
        let leader_ms = leader_ms.clamp(50, 60_000);
        let certification_ms = certification_ms.max(leader_ms + 1);
        let retry_ms = certification_ms;
        let skip_ms = certification_ms * 2 + 1;
        let t = Self {
            leader_ms,
            certification_ms,
            retry_ms,
            skip_ms,
        };
        assert!(t.leader_ms < t.certification_ms && t.certification_ms < t.skip_ms);
        assert!(t.retry_ms < t.skip_ms && t.retry_ms > 0);
        t
    }
}

/// The six registered channels a node runs on.
pub struct Channels<S, R> {
    /// Simplex votes.
    pub votes: (S, R),
    /// Simplex certificates.
    pub certificates: (S, R),
    /// Simplex resolver.
    pub resolver: (S, R),
    /// Marshal backfill.
    pub backfill: (S, R),
    /// Block broadcast.
    pub broadcast: (S, R),
    /// Transaction gossip.
    pub txs: (S, R),
}

/// Reads finalized blocks from marshal's archive (for APIs and replay).
#[derive(Clone)]
pub struct BlockReader {
    marshal: MarshalMailbox<Scheme, Standard<Block>>,
}

impl BlockReader {
    /// The finalized block at `height`, if this node holds it.
    pub async fn get(&self, height: u64) -> Option<Arc<Block>> {
        self.marshal
            .get_block(Identifier::Height(Height::new(height)))
            .await
            .map(|b| b.inner_shared())
    }
}

/// Why the finalizer stopped: the node's state no longer advances after this.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FinalizerStopped {
    /// A finalized block needed to fill a gap is not in marshal's archive.
    #[error("finalized block {height} is missing from the archive")]
    MissingBlock {
        /// The missing height.
        height: u64,
    },
    /// Applying a finalized block failed.
    #[error("cannot apply finalized block {height}: {reason}")]
    Apply {
        /// The block's height.
        height: u64,
        /// The ledger's or store's error.
        reason: String,
    },
    /// Marshal closed the finalized-block feed.
    #[error("marshal closed the finalized-block feed")]
    FeedClosed,
}

/// A running node.
pub struct Node {
    /// Finalized block reader.
    pub blocks: BlockReader,
    /// State shared with services (admin API, DNS, gateway ...).
    pub shared: Arc<Shared>,
    /// Task handles (abort to stop the node).
    pub handles: Vec<Handle<()>>,
    /// `None` while the finalizer runs; why it stopped once it has (if the task is aborted
    /// instead, the sender is dropped and receivers see the channel close).
    pub finalizer_exit: tokio::sync::watch::Receiver<Option<FinalizerStopped>>,
}

impl Node {
    /// Stops every task of this node.
    pub fn abort(&self) {
        for handle in &self.handles {
            handle.abort();
        }
    }
}

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state store could not be opened or is inconsistent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The committee is empty or has duplicates.
    #[error("invalid committee: {0}")]
    Committee(String),
}

/// Forwards marshal's ordered finalized blocks to the finalizer task.
#[derive(Clone)]
struct Finalizer {
    sender: mpsc::UnboundedSender<(Arc<Block>, commonware_utils::acknowledgement::Exact)>,
}

impl Reporter for Finalizer {
    type Activity = Update<Block>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        match activity {
            // Bounded by marshal's `max_pending_acks`: it sends no more until we acknowledge.
            Update::Block(block, ack) => {
                if self
                    .sender
                    .unbounded_send((block.inner_shared(), ack))
                    .is_err()
                {
                    return Feedback::Closed;
                }
            }
            Update::Tip(..) => {}
        }
        Feedback::Ok
    }
}

/// Starts a node on the given runtime context and channels.
///
/// `signer` signs votes when it is in `cfg.committee`; otherwise the node follows the chain
/// (verifies certificates, syncs blocks) without voting.
#[allow(clippy::too_many_arguments)]
pub async fn start<E, S, R, P, B>(
    context: E,
    cfg: Config,
    signer: ed25519::PrivateKey,
    genesis: &Genesis,
    store: Box<dyn StateStore>,
    sig_cache: Arc<SigCache>,
    channels: Channels<S, R>,
    peer_provider: P,
    blocker: B,
) -> Result<Node, StartError>
where
    E: Clock + CryptoRng + Spawner + Storage + Metrics + rand_core::Rng,
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
    P: Provider<PublicKey = ed25519::PublicKey>,
    B: Blocker<PublicKey = ed25519::PublicKey> + Clone,
{
    let committee = Set::try_from(cfg.committee.clone())
        .map_err(|_| StartError::Committee("duplicate member".into()))?;
    if committee.is_empty() {
        return Err(StartError::Committee("empty".into()));
    }
    let public_key = signer.public_key();
    let scheme = Scheme::signer(NAMESPACE, committee.clone(), signer.clone())
        .unwrap_or_else(|| Scheme::verifier(NAMESPACE, committee.clone()));
    let genesis_block = Block::genesis(&cfg.chain_id);
    let shared = Shared::open(
        genesis,
        &genesis_block,
        store,
        Mempool::new(cfg.mempool_max_txs, cfg.mempool_max_bytes),
        sig_cache,
    )?;
    let prefix = cfg.partition_prefix.clone();
    let page_cache = CacheRef::new(NZU16!(4096), NZUsize!(1024));
    let epocher = FixedEpocher::new(EPOCH_LENGTH);
    let provider = ConstantProvider::<Scheme, Epoch>::new(scheme.clone());

    // Marshal backfill resolver.
    let resolver_cfg = marshal_resolver::Config {
        public_key: public_key.clone(),
        peer_provider: peer_provider.clone(),
        blocker: blocker.clone(),
        mailbox_size: NZUsize!(1024),
        fetch_timeout: NZDuration!(Duration::from_secs(2)),
        fetch_retry_delay: Duration::from_millis(100),
        priority_requests: false,
        priority_responses: false,
    };
    let resolver =
        marshal_resolver::init(context.child("resolver"), resolver_cfg, channels.backfill);

    // Block broadcast buffer.
    let (broadcast_engine, buffer) = buffered::Engine::new(
        context.child("broadcast"),
        buffered::Config {
            public_key: public_key.clone(),
            mailbox_size: NZUsize!(1024),
            deque_size: 16,
            priority: false,
            codec_config: (),
            peer_provider,
            strategy: Sequential,
        },
    );
    let broadcast_handle = broadcast_engine.start(channels.broadcast);

    let finalizations = immutable::Archive::init(
        context.child("finalizations"),
        archive_config(
            &prefix,
            "finalizations",
            &page_cache,
            <Scheme as commonware_cryptography::certificate::Verifier>::certificate_codec_config_unbounded(),
        ),
    )
    .await
    .map_err(|e| StoreError::Db(format!("finalizations archive: {e}")))?;
    let blocks = immutable::Archive::init(
        context.child("blocks"),
        archive_config(&prefix, "blocks", &page_cache, ()),
    )
    .await
    .map_err(|e| StoreError::Db(format!("blocks archive: {e}")))?;

    let marshal_cfg = marshal::Config {
        provider,
        epocher: epocher.clone(),
        start: marshal::Start::Genesis(Digested::precomputed(
            genesis_block.clone(),
            genesis_block.digest(),
        )),
        partition_prefix: format!("{prefix}-marshal"),
        mailbox_size: NZUsize!(1024),
        view_retention: ViewDelta::new(64),
        prunable_items_per_section: NZU64!(64),
        page_cache: page_cache.clone(),
        replay_buffer: NZUsize!(1024 * 1024),
        key_write_buffer: NZUsize!(1024 * 1024),
        value_write_buffer: NZUsize!(1024 * 1024),
        block_codec_config: (),
        max_repair: NZUsize!(16),
        max_pending_acks: NZUsize!(16),
        strategy: Sequential,
    };
    let (actor, marshal_mailbox, _floor): (_, MarshalMailbox<Scheme, Standard<Block>>, _) =
        MarshalActor::init(context.child("marshal"), finalizations, blocks, marshal_cfg).await;

    let (finalized_sender, finalized_receiver) = mpsc::unbounded();
    let marshal_handle = actor.start(
        Finalizer {
            sender: finalized_sender,
        },
        buffer,
        resolver,
    );

    // Consensus.
    let timeouts = Timeouts::derive(cfg.leader_timeout_ms, cfg.certification_timeout_ms);
    let application = Application::new(shared.clone(), cfg.empty_block_interval_ms);
    let inline = Inline::new(
        context.child("inline"),
        application,
        marshal_mailbox.clone(),
        epocher,
    );
    let engine = simplex::Engine::new(
        context.child("simplex"),
        simplex::config::Config {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker,
            automaton: inline.clone(),
            relay: inline.clone(),
            reporter: inline,
            strategy: Sequential,
            partition: format!("{prefix}-simplex"),
            mailbox_size: NZUsize!(1024),
            epoch: Epoch::zero(),
            floor: simplex::config::Floor::Genesis(genesis_block.digest()),
            leader_timeout: Duration::from_millis(timeouts.leader_ms),
            certification_timeout: Duration::from_millis(timeouts.certification_ms),
            timeout_retry: Duration::from_millis(timeouts.retry_ms),
            fetch_timeout: NZDuration!(Duration::from_secs(1)),
            fetch_retry_delay: Duration::from_millis(100),
            view_retention: ViewDelta::new(64),
            skip: SkipPolicy::Enabled {
                timeout: Duration::from_millis(timeouts.skip_ms),
                budget: SkipBudget::Participants,
            },
            replay_buffer: NZUsize!(1024 * 1024),
            write_buffer: NZUsize!(1024 * 1024),
            page_cache,
            forward: ForwardPolicy::Disabled,
            track_historical_votes: false,
        },
    );
    let engine_handle = engine.start(channels.votes, channels.certificates, channels.resolver);

    let marshal_mailbox_reader = marshal_mailbox.clone();
    let (finalizer_exit_tx, finalizer_exit) = tokio::sync::watch::channel(None);
    let finalizer_handle = context.child("finalizer").spawn({
        let shared = shared.clone();
        move |_| async move {
            let stopped = run_finalizer(shared, marshal_mailbox, finalized_receiver).await;
            error!(reason = %stopped, "finalizer stopped; this node's state no longer advances");
            let _ = finalizer_exit_tx.send(Some(stopped));
        }
    });
    let gossip_handle = context.child("gossip").spawn({
        let shared = shared.clone();
        let interval = Duration::from_millis(cfg.gossip_interval_ms.max(1));
        move |context| run_gossip(context, shared, channels.txs, interval)
    });
    info!(height = shared.finalized_height(), "node started");
    Ok(Node {
        blocks: BlockReader {
            marshal: marshal_mailbox_reader,
        },
        shared,
        handles: vec![
            broadcast_handle,
            marshal_handle,
            engine_handle,
            finalizer_handle,
            gossip_handle,
        ],
        finalizer_exit,
    })
}

fn archive_config<C>(
    prefix: &str,
    name: &str,
    page_cache: &CacheRef,
    codec_config: C,
) -> immutable::Config<C> {
    immutable::Config {
        metadata_partition: format!("{prefix}-{name}-metadata"),
        freezer_table_partition: format!("{prefix}-{name}-freezer-table"),
        freezer_table_initial_size: 1024,
        freezer_table_resize_frequency: 4,
        freezer_table_resize_chunk_size: 1024,
        freezer_key_partition: format!("{prefix}-{name}-freezer-key"),
        freezer_key_page_cache: page_cache.clone(),
        freezer_value_partition: format!("{prefix}-{name}-freezer-value"),
        freezer_value_target_size: 64 * 1024 * 1024,
        freezer_value_compression: None,
        ordinal_partition: format!("{prefix}-{name}-ordinal"),
        items_per_section: NZU64!(4096),
        codec_config,
        replay_buffer: NZUsize!(1024 * 1024),
        freezer_key_write_buffer: NZUsize!(1024 * 1024),
        freezer_value_write_buffer: NZUsize!(1024 * 1024),
        ordinal_write_buffer: NZUsize!(1024 * 1024),
    }
}

/// Applies finalized blocks in order, filling any gap from marshal's archive first; returns
/// only when it cannot go on.
async fn run_finalizer(
    shared: Arc<Shared>,
    marshal: MarshalMailbox<Scheme, Standard<Block>>,
    mut receiver: mpsc::UnboundedReceiver<(Arc<Block>, commonware_utils::acknowledgement::Exact)>,
) -> FinalizerStopped {
    while let Some((block, ack)) = receiver.next().await {
        let applied = shared.finalized_height();
        if block.height <= applied {
            // Redelivery after a restart: already applied and durable.
            ack.acknowledge();
            continue;
        }
        // Durable state trails marshal (state is persisted every PERSIST_EVERY_BLOCKS heights):
        // replay the missing finalized blocks from marshal's archive before this one.
        if block.height > applied + 1 {
            info!(
                from = applied + 1,
                to = block.height - 1,
                "replaying finalized blocks from the archive"
            );
        }
        for height in applied + 1..block.height {
            let Some(missing) = marshal
                .get_block(Identifier::Height(Height::new(height)))
                .await
            else {
                return FinalizerStopped::MissingBlock { height };
            };
            if let Err(e) = shared.replay_finalized(missing.inner()) {
                return FinalizerStopped::Apply {
                    height,
                    reason: e.to_string(),
                };
            }
        }
        if let Err(e) = shared.apply_finalized(&block) {
            return FinalizerStopped::Apply {
                height: block.height,
                reason: e.to_string(),
            };
        }
        ack.acknowledge();
    }
    FinalizerStopped::FeedClosed
}

/// Splits pending transactions into gossip batches of at most [`MAX_GOSSIP_TXS`] transactions
/// and [`MAX_BLOCK_TX_BYTES`] bytes, so every batch fits the p2p message limit.
fn gossip_chunks(txs: &[Bytes]) -> Vec<&[Bytes]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, tx) in txs.iter().enumerate() {
        if i > start && (i - start == MAX_GOSSIP_TXS || bytes + tx.len() > MAX_BLOCK_TX_BYTES) {
            out.push(&txs[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += tx.len();
    }
    if start < txs.len() {
        out.push(&txs[start..]);
    }
    out
}

fn encode_batch(txs: &[Bytes]) -> Bytes {
    let size: usize = txs
        .iter()
        .map(|t| UInt(t.len() as u32).encode_size() + t.len())
        .sum::<usize>()
        + UInt(txs.len() as u32).encode_size();
    let mut buf = Vec::with_capacity(size);
    UInt(txs.len() as u32).write(&mut buf);
    for tx in txs {
        UInt(tx.len() as u32).write(&mut buf);
        buf.put_slice(tx);
    }
    Bytes::from(buf)
}

/// Decodes a gossip batch; `None` for malformed or oversize input (peer input: never panic).
pub fn decode_batch(mut buf: impl Buf) -> Option<Vec<Bytes>> {
    let count: u32 = UInt::<u32>::read(&mut buf).ok()?.into();
    if count as usize > MAX_GOSSIP_TXS {
        return None;
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len: u32 = UInt::<u32>::read_cfg(&mut buf, &()).ok()?.into();
        let len = len as usize;
        if len > cairn_ledger::MAX_TX_SIZE_BYTES || buf.remaining() < len {
            return None;
        }
        out.push(buf.copy_to_bytes(len));
    }
    if buf.has_remaining() {
        return None;
    }
    Some(out)
}

/// Relays newly submitted transactions to peers and admits peers' transactions.
async fn run_gossip<E: Clock, S, R>(
    context: E,
    shared: Arc<Shared>,
    (mut sender, mut receiver): (S, R),
    interval: Duration,
) where
    S: Sender<PublicKey = ed25519::PublicKey>,
    R: Receiver<PublicKey = ed25519::PublicKey>,
{
    loop {
        commonware_macros::select! {
            _ = context.sleep(interval) => {
                let pending = shared.mempool.take_gossip();
                for chunk in gossip_chunks(&pending) {
                    let _ = sender.send(Recipients::All, encode_batch(chunk), false);
                }
            },
            message = receiver.recv() => {
                let Ok((peer, payload)) = message else {
                    warn!("gossip receiver closed");
                    return;
                };
                match decode_batch(payload) {
                    Some(txs) => {
                        for tx in txs {
                            shared.admit_gossip(tx);
                        }
                    }
                    None => warn!(?peer, "malformed gossip batch dropped"),
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_batch_round_trip_and_rejects_garbage() {
        let txs = vec![Bytes::from_static(b"a"), Bytes::from_static(b"bcd")];
        assert_eq!(decode_batch(encode_batch(&txs)).unwrap(), txs);
        assert!(decode_batch(Bytes::from_static(&[5, 1])).is_none());
        let mut trailing = encode_batch(&txs).to_vec();
        trailing.push(9);
        assert!(decode_batch(Bytes::from(trailing)).is_none());
        assert!(decode_batch(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f])).is_none());
    }

    #[test]
    fn gossip_chunks_respect_count_and_byte_bounds() {
        let big = Bytes::from(vec![1u8; cairn_ledger::MAX_TX_SIZE_BYTES]);
        let txs = vec![big; 100]; // 6.25 MiB in total
        let chunks = gossip_chunks(&txs);
        assert!(chunks.len() >= 4);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 100);
        for c in &chunks {
            let bytes: usize = c.iter().map(Bytes::len).sum();
            assert!(bytes <= MAX_BLOCK_TX_BYTES && c.len() <= MAX_GOSSIP_TXS);
            assert!((encode_batch(c).len() as u32) < max_message_size());
        }
        let small = vec![Bytes::from_static(b"x"); 1500];
        let chunks = gossip_chunks(&small);
        assert_eq!(
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
            [512, 512, 476]
        );
        assert!(gossip_chunks(&[]).is_empty());
    }
}
