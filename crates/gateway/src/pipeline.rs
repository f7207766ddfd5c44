//! Upload and download pipelines over any [`FragmentTransport`].
//!
//! Upload: the body streams into one segment buffer; each full segment is erasure-coded, every
//! fragment's Merkle root computed, and the k + m fragments pushed to their placed nodes in
//! parallel. A segment is done once its write quorum holds: at least `write_quorum` (k + 2)
//! pushes acknowledged as durable *and* spread so that losing any one failure domain
//! (`fragment_domains`) leaves k. The pushes still running then get a grace of twice the time
//! the quorum took, within [`UPLOAD_GRACE_MS`]..=[`UPLOAD_GRACE_MAX_MS`]; whatever has not
//! finished is dropped and left clear in the segment's `stored_mask`, for repair. One slow or
//! blackholed node therefore costs a PUT at most the grace, not the transport timeout, while
//! healthy but loaded nodes still get their fragments in. If every push has finished without a quorum the upload fails with
//! [`UploadError::Unavailable`] and the caller records nothing (fragments already pushed are
//! unreferenced garbage, never a visible object).
//! Memory: one segment plus its k + m fragments, about (1 + (k + m) / k) × segment size.
//!
//! Download: per segment, ask k nodes (data fragments first, so a healthy read needs no
//! decoding), hedge with `extra_requests` more if the k are not in after `HEDGE_AFTER_MS`,
//! start another request whenever one fails or returns bytes that
//! do not match their root, and decode from the first k verified fragments. Ranges read only
//! the segments they overlap. Nothing here waits for consensus, so reads keep working while the
//! committee has lost its quorum.

use bytes::Bytes;
use cairn_ledger::{
    objects::{Segment, MAX_MANIFEST_SEGMENTS, MAX_SEGMENT_SIZE_BYTES},
    Hash, NodeId,
};
pub use cairn_storage::protocol::{FragmentTransport, TransportError};
use cairn_storage::{erasure, merkle, Coding, CodingError};
use futures::{
    future::Either,
    stream::{FuturesOrdered, FuturesUnordered},
    Stream, StreamExt,
};
use std::sync::Arc;
use thiserror::Error;

/// How long a segment read waits for its first k fragments before hedging with more.
pub const HEDGE_AFTER_MS: u64 = 100;

/// Least time a segment upload waits for the remaining pushes once its write quorum holds.
pub const UPLOAD_GRACE_MS: u64 = 100;
/// Most time it waits: the grace is twice the time the quorum took, within these bounds, so
/// healthy stragglers on a loaded machine still land while a blackholed node costs a bounded
/// delay (below the transport timeout).
pub const UPLOAD_GRACE_MAX_MS: u64 = 5_000;

/// Upload parameters.
#[derive(Clone, Copy, Debug)]
pub struct UploadConfig {
    /// The bucket's RS(k, m).
    pub coding: Coding,
    /// Segment size (the last segment may be shorter).
    pub segment_size_bytes: usize,
    /// Fragments per segment that must be durable for the upload to succeed.
    pub write_quorum: usize,
    /// Failure domain of each fragment slot (slots with the same value fail together, e.g.
    /// one zone); the durable fragments must survive losing any one. Default: slot i is
    /// domain i.
    pub fragment_domains: [u8; 64],
}

/// Each slot its own failure domain.
pub const DISTINCT_DOMAINS: [u8; 64] = {
    let mut d = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        d[i] = i as u8;
        i += 1;
    }
    d
};

impl UploadConfig {
    /// Defaults: 32 MiB segments and a write quorum of k + 2 (capped at k + m).
    pub fn new(coding: Coding) -> Self {
        Self {
            coding,
            segment_size_bytes: MAX_SEGMENT_SIZE_BYTES as usize,
            write_quorum: (coding.data as usize + 2).min(coding.total()),
            fragment_domains: DISTINCT_DOMAINS,
        }
    }

    /// True once the fragments in `stored_mask` meet the write quorum (module docs).
    pub fn quorum_met(&self, stored_mask: u64) -> bool {
        let n = self.coding.total().min(64);
        stored_mask.count_ones() as usize >= self.write_quorum
            && cairn_ledger::placement::survives_domain_loss(
                usize::from(self.coding.data),
                &self.fragment_domains[..n],
                stored_mask,
            )
    }

    fn validate(&self) -> Result<(), UploadError> {
        self.coding.validate().map_err(UploadError::Coding)?;
        let k = self.coding.data as usize;
        if self.write_quorum < k || self.write_quorum > self.coding.total() {
            return Err(UploadError::Config(format!(
                "write quorum {} must be between k = {k} and k + m = {}",
                self.write_quorum,
                self.coding.total()
            )));
        }
        if self.segment_size_bytes == 0 || self.segment_size_bytes as u64 > MAX_SEGMENT_SIZE_BYTES {
            return Err(UploadError::Config(format!(
                "segment size must be 1..={MAX_SEGMENT_SIZE_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

/// Why an upload failed; each maps to an S3 error.
#[derive(Debug, Error)]
pub enum UploadError {
    /// Fewer than the write quorum of nodes stored a segment (S3 503 ServiceUnavailable).
    #[error("segment {segment} reached only {stored} durable fragments; it needs {quorum}, spread so that losing any one failure domain leaves k; too many storage nodes are unreachable, retry later")]
    Unavailable {
        /// Segment index.
        segment: usize,
        /// Fragments durably stored.
        stored: usize,
        /// Required.
        quorum: usize,
    },
    /// The object exceeds what one manifest can describe (S3 400 EntityTooLarge).
    #[error("object exceeds {max_bytes} bytes, the largest one manifest can hold; use a multipart upload")]
    TooLarge {
        /// The limit.
        max_bytes: u64,
    },
    /// The placement does not name one node per fragment.
    #[error("placement names {got} nodes but RS({k}, {m}) needs {need}")]
    Placement {
        /// Nodes given.
        got: usize,
        /// k + m.
        need: usize,
        /// k.
        k: u8,
        /// m.
        m: u8,
    },
    /// Reading the request body failed (S3 400 IncompleteBody).
    #[error("reading the request body failed: {0}")]
    Body(String),
    /// Coding failed.
    #[error(transparent)]
    Coding(CodingError),
    /// Invalid parameters.
    #[error("invalid upload configuration: {0}")]
    Config(String),
}

/// Why a download failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DownloadError {
    /// Fewer than k verified fragments could be fetched (S3 503 ServiceUnavailable).
    #[error("only {have} verified fragments of the {need} needed for segment {segment} could be fetched; wait for nodes to return or for repair")]
    Unavailable {
        /// Segment index.
        segment: usize,
        /// Verified fragments fetched.
        have: usize,
        /// k.
        need: usize,
    },
    /// The requested range is outside the object (S3 416 InvalidRange).
    #[error("range {start}..{end} is outside the object's {size} bytes")]
    Range {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// Object size.
        size: u64,
    },
    /// The manifest is inconsistent with its coding.
    #[error("manifest does not match RS({k}, {m}): {reason}")]
    Manifest {
        /// k.
        k: u8,
        /// m.
        m: u8,
        /// What is wrong.
        reason: String,
    },
    /// Decoding failed.
    #[error(transparent)]
    Coding(#[from] CodingError),
}

/// Encodes one segment and pushes its fragments; returns its manifest entry.
async fn store_segment<T: FragmentTransport>(
    transport: &T,
    cfg: &UploadConfig,
    placement: &[NodeId],
    index: usize,
    segment: &[u8],
) -> Result<Segment, UploadError> {
    let fragments = erasure::encode(cfg.coding, segment).map_err(UploadError::Coding)?;
    let roots: Vec<Hash> = fragments.iter().map(|f| merkle::root_of(f)).collect();
    let mut pushes: FuturesUnordered<_> = fragments
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let (node, root) = (placement[i], roots[i]);
            async move { (i, transport.put(node, root, Bytes::from(f)).await) }
        })
        .collect();
    let mut stored_mask = 0u64;
    let started_ms = transport.now_ms();
    while !cfg.quorum_met(stored_mask) {
        let Some((i, result)) = pushes.next().await else {
            break;
        };
        if result.is_ok() {
            stored_mask |= 1 << i;
        }
    }
    if cfg.quorum_met(stored_mask) && !pushes.is_empty() {
        // Late pushes get a bounded grace; those still running are dropped (left for repair).
        let took_ms = transport.now_ms().saturating_sub(started_ms);
        let grace_ms = took_ms
            .saturating_mul(2)
            .clamp(UPLOAD_GRACE_MS, UPLOAD_GRACE_MAX_MS);
        let grace = transport.hedge_delay(grace_ms);
        futures::pin_mut!(grace);
        while let Either::Left((Some((i, result)), _)) =
            futures::future::select(pushes.next(), grace.as_mut()).await
        {
            if result.is_ok() {
                stored_mask |= 1 << i;
            }
        }
    }
    let stored = stored_mask.count_ones() as usize;
    if !cfg.quorum_met(stored_mask) {
        return Err(UploadError::Unavailable {
            segment: index,
            stored,
            quorum: cfg.write_quorum,
        });
    }
    Ok(Segment {
        len_bytes: segment.len() as u64,
        fragment_roots: roots,
        stored_mask,
    })
}

/// Streams `body` into segments stored on `placement` (one node per fragment index).
pub async fn upload<T, S, E>(
    transport: &T,
    cfg: &UploadConfig,
    placement: &[NodeId],
    mut body: S,
) -> Result<Vec<Segment>, UploadError>
where
    T: FragmentTransport,
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    cfg.validate()?;
    if placement.len() != cfg.coding.total() {
        return Err(UploadError::Placement {
            got: placement.len(),
            need: cfg.coding.total(),
            k: cfg.coding.data,
            m: cfg.coding.parity,
        });
    }
    // Fragments are indexed by u64 bit masks.
    debug_assert!(cfg.coding.total() <= 64);
    let max_bytes = cfg.segment_size_bytes as u64 * MAX_MANIFEST_SEGMENTS as u64;
    let mut segments = Vec::new();
    // Segments being encoded and pushed while the body keeps streaming in, in order.
    let mut pending = FuturesOrdered::new();
    let mut started = 0usize;
    let mut buffer: Vec<u8> = Vec::with_capacity(cfg.segment_size_bytes.min(1 << 20));
    let mut total: u64 = 0;
    let store = |index: usize, data: Vec<u8>| async move {
        store_segment(transport, cfg, placement, index, &data).await
    };
    loop {
        if pending.len() >= UPLOAD_PIPELINE_SEGMENTS {
            let done: Option<Result<Segment, UploadError>> = pending.next().await;
            segments.push(done.expect("pending is not empty")?);
            continue;
        }
        let chunk = if pending.is_empty() {
            body.next().await
        } else {
            match futures::future::select(body.next(), pending.next()).await {
                Either::Left((chunk, _)) => chunk,
                Either::Right((done, _)) => {
                    segments.push(done.expect("pending is not empty")?);
                    continue;
                }
            }
        };
        let Some(chunk) = chunk else { break };
        let mut chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
        total += chunk.len() as u64;
        if total > max_bytes {
            return Err(UploadError::TooLarge { max_bytes });
        }
        while !chunk.is_empty() {
            let take = (cfg.segment_size_bytes - buffer.len()).min(chunk.len());
            buffer.extend_from_slice(&chunk.split_to(take));
            if buffer.len() == cfg.segment_size_bytes {
                let full = std::mem::replace(
                    &mut buffer,
                    Vec::with_capacity(cfg.segment_size_bytes.min(1 << 20)),
                );
                pending.push_back(store(started, full));
                started += 1;
            }
        }
    }
    if !buffer.is_empty() {
        pending.push_back(store(started, buffer));
    }
    while let Some(done) = pending.next().await {
        segments.push(done?);
    }
    debug_assert_eq!(
        segments.len(),
        started + usize::from(segments.len() > started)
    );
    Ok(segments)
}

/// Segments an upload encodes and pushes at once while its body keeps arriving; bounds an
/// upload's memory to about this many segments plus their fragments.
pub const UPLOAD_PIPELINE_SEGMENTS: usize = 2;

/// Fetches and verifies fragments of one segment until k are in hand, then decodes it.
pub async fn read_segment<T: FragmentTransport>(
    transport: &T,
    coding: Coding,
    placement: &[NodeId],
    index: usize,
    segment: &Segment,
    extra_requests: usize,
) -> Result<Vec<u8>, DownloadError> {
    coding.validate()?;
    let total = coding.total();
    let k = coding.data as usize;
    if placement.len() != total || segment.fragment_roots.len() != total {
        return Err(DownloadError::Manifest {
            k: coding.data,
            m: coding.parity,
            reason: format!(
                "{} nodes and {} roots for {total} fragments",
                placement.len(),
                segment.fragment_roots.len()
            ),
        });
    }
    let size = coding.fragment_size(segment.len_bytes as usize);
    let fetch = |i: usize| {
        let (node, root) = (placement[i], segment.fragment_roots[i]);
        async move {
            let got = transport.get(node, root).await;
            // Invariant 6: only bytes matching the manifest's root are ever used.
            let verified = match got {
                Ok(b) if b.len() == size && merkle::root_of(&b) == root => Some(b),
                Ok(_) => {
                    // Served but wrong: its holder re-verifies and reports the loss.
                    transport.report_corrupt(node, root).await;
                    None
                }
                Err(_) => None,
            };
            (i, verified)
        }
    };
    // The hedge timer reports as index `usize::MAX`.
    let hedge = || {
        Either::Right(async {
            transport.hedge_delay(HEDGE_AFTER_MS).await;
            (usize::MAX, None)
        })
    };
    let mut next = 0;
    let mut in_flight = FuturesUnordered::new();
    while next < k.min(total) {
        in_flight.push(Either::Left(fetch(next)));
        next += 1;
    }
    let mut hedges_left = extra_requests;
    if hedges_left > 0 {
        in_flight.push(hedge());
    }
    let mut slots: Vec<Option<Vec<u8>>> = vec![None; total];
    let mut have = 0;
    while let Some((i, verified)) = in_flight.next().await {
        if i == usize::MAX {
            while hedges_left > 0 && next < total {
                in_flight.push(Either::Left(fetch(next)));
                next += 1;
                hedges_left -= 1;
            }
            continue;
        }
        match verified {
            Some(bytes) => {
                slots[i] = Some(bytes.to_vec());
                have += 1;
                if have == k {
                    break;
                }
            }
            None if next < total => {
                in_flight.push(Either::Left(fetch(next)));
                next += 1;
            }
            None => {}
        }
    }
    drop(in_flight); // cancels the slower requests
    if have < k {
        return Err(DownloadError::Unavailable {
            segment: index,
            have,
            need: k,
        });
    }
    Ok(erasure::decode(coding, segment.len_bytes as usize, &slots)?)
}

/// Streams bytes `start..end` of an object, reading only the segments the range overlaps.
/// The stream owns what it reads from, so it can outlive the request handler that built it.
pub fn read_range<T: FragmentTransport + 'static>(
    transport: Arc<T>,
    coding: Coding,
    placement: Arc<[NodeId]>,
    segments: Arc<[Segment]>,
    start: u64,
    end: u64,
    extra_requests: usize,
) -> Result<impl Stream<Item = Result<Bytes, DownloadError>> + Send + 'static, DownloadError> {
    let size: u64 = segments.iter().map(|s| s.len_bytes).sum();
    if start > end || end > size {
        return Err(DownloadError::Range { start, end, size });
    }
    // (segment index, segment offset in the object) of every overlapping segment.
    let mut offset = 0u64;
    let mut wanted = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        let seg_end = offset + s.len_bytes;
        if seg_end > start && offset < end {
            wanted.push((i, offset));
        }
        offset = seg_end;
    }
    // Segments are fetched ahead while earlier ones stream out: per read, at most
    // READ_AHEAD_SEGMENTS segments are being fetched plus the one being sent.
    Ok(futures::stream::iter(wanted)
        .map(move |(i, seg_start)| {
            let (transport, placement, segments) =
                (transport.clone(), placement.clone(), segments.clone());
            async move {
                let seg = &segments[i];
                let data =
                    read_segment(&*transport, coding, &placement, i, seg, extra_requests).await?;
                let from = start.saturating_sub(seg_start) as usize;
                let to = (end - seg_start).min(seg.len_bytes) as usize;
                Ok(Bytes::from(data).slice(from..to))
            }
        })
        .buffered(READ_AHEAD_SEGMENTS))
}

/// Segments a read fetches ahead of the one being streamed.
pub const READ_AHEAD_SEGMENTS: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_storage::FragmentStore;
    use futures::executor::block_on;
    use std::{
        collections::{HashMap, HashSet},
        sync::{
            atomic::{AtomicU64, AtomicUsize, Ordering},
            Mutex,
        },
    };

    /// Unit-test transport: one real on-disk fragment store per node, with nodes that can be
    /// switched off.
    struct Local {
        stores: HashMap<NodeId, FragmentStore>,
        down: Mutex<HashSet<NodeId>>,
        /// Nodes whose pushes never complete (blackholed).
        stuck: Mutex<HashSet<NodeId>>,
        gets: AtomicUsize,
        dirs: Vec<tempfile::TempDir>,
        /// The transport's clock (ms); each completed push advances it by `push_cost_ms`.
        clock_ms: AtomicU64,
        push_cost_ms: AtomicU64,
        /// Every delay the pipeline asked for.
        delays_ms: Mutex<Vec<u64>>,
        /// Every corrupt-fragment report: (node, root).
        reports: Mutex<Vec<(NodeId, Hash)>>,
    }

    impl Local {
        fn new(n: u8) -> Self {
            let mut stores = HashMap::new();
            let mut dirs = Vec::new();
            for i in 0..n {
                let d = tempfile::tempdir().unwrap();
                stores.insert([i; 32], FragmentStore::open(d.path(), 4).unwrap());
                dirs.push(d);
            }
            Self {
                stores,
                down: Mutex::default(),
                stuck: Mutex::default(),
                gets: AtomicUsize::new(0),
                clock_ms: AtomicU64::new(0),
                push_cost_ms: AtomicU64::new(0),
                delays_ms: Mutex::default(),
                reports: Mutex::default(),
                dirs,
            }
        }
        /// Where node `node` keeps fragment `root` (the store's documented layout).
        fn path(&self, node: u8, root: &Hash) -> std::path::PathBuf {
            let h: String = root.iter().map(|b| format!("{b:02x}")).collect();
            self.dirs[node as usize]
                .path()
                .join(&h[..2])
                .join(format!("{h}.frag"))
        }
        fn stop(&self, nodes: impl IntoIterator<Item = u8>) {
            self.down
                .lock()
                .unwrap()
                .extend(nodes.into_iter().map(|i| [i; 32]));
        }
        fn store(&self, node: u8) -> &FragmentStore {
            &self.stores[&[node; 32]]
        }
    }

    impl FragmentTransport for Local {
        async fn put(&self, node: NodeId, root: Hash, data: Bytes) -> Result<(), TransportError> {
            if self.stuck.lock().unwrap().contains(&node) {
                futures::future::pending::<()>().await;
            }
            if self.down.lock().unwrap().contains(&node) {
                return Err(TransportError("node down".into()));
            }
            let cost = self.push_cost_ms.load(Ordering::SeqCst);
            self.clock_ms.fetch_add(cost, Ordering::SeqCst);
            self.stores[&node]
                .put(&root, &data)
                .map_err(|e| TransportError(e.to_string()))
        }
        async fn get(&self, node: NodeId, root: Hash) -> Result<Bytes, TransportError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            if self.down.lock().unwrap().contains(&node) {
                return Err(TransportError("node down".into()));
            }
            // Raw file read (no store-side verification), so the pipeline's check is what runs.
            std::fs::read(self.path(node[0], &root))
                .map(Bytes::from)
                .map_err(|e| TransportError(e.to_string()))
        }
        async fn hedge_delay(&self, ms: u64) {
            self.delays_ms.lock().unwrap().push(ms);
        }
        async fn report_corrupt(&self, node: NodeId, root: Hash) {
            self.reports.lock().unwrap().push((node, root));
        }
        fn now_ms(&self) -> u64 {
            self.clock_ms.load(Ordering::SeqCst)
        }
    }

    fn placement() -> Vec<NodeId> {
        (0..12u8).map(|i| [i; 32]).collect()
    }

    fn cfg(segment: usize) -> UploadConfig {
        UploadConfig {
            segment_size_bytes: segment,
            ..UploadConfig::new(Coding::DEFAULT)
        }
    }

    fn body(data: &[u8], chunk: usize) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        let chunks: Vec<Result<Bytes, String>> = data
            .chunks(chunk.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks)
    }

    fn object(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    fn read_all(
        t: &Arc<Local>,
        segs: &[Segment],
        start: u64,
        end: u64,
    ) -> Result<Vec<u8>, DownloadError> {
        block_on(async {
            let (p, segs): (Arc<[NodeId]>, Arc<[Segment]>) = (placement().into(), segs.into());
            let mut s = std::pin::pin!(read_range(
                t.clone(),
                Coding::DEFAULT,
                p,
                segs,
                start,
                end,
                0
            )?);
            let mut out = Vec::new();
            while let Some(part) = s.next().await {
                out.extend_from_slice(&part?);
            }
            Ok(out)
        })
    }

    #[test]
    fn round_trips_across_segment_boundaries() {
        let t = Arc::new(Local::new(12));
        for len in [0usize, 1, 4096, 65_536, 65_537, 200_000] {
            let data = object(len);
            let segs =
                block_on(upload(&*t, &cfg(65_536), &placement(), body(&data, 7_000))).unwrap();
            assert_eq!(segs.len(), len.div_ceil(65_536));
            assert!(segs.iter().all(|s| s.stored_mask == 0xfff));
            assert_eq!(
                read_all(&t, &segs, 0, len as u64).unwrap(),
                data,
                "len {len}"
            );
        }
    }

    #[test]
    fn two_zones_down_reads_still_byte_identical() {
        let t = Arc::new(Local::new(12));
        let data = object(150_000);
        let segs = block_on(upload(&*t, &cfg(65_536), &placement(), body(&data, 4096))).unwrap();
        // Placement interleaves zones z0,z1,z2: stop every node of two zones (8 of 12).
        t.stop((0..12).filter(|i| i % 3 != 0));
        assert_eq!(read_all(&t, &segs, 0, 150_000).unwrap(), data);
        t.stop([0]);
        assert!(matches!(
            read_all(&t, &segs, 0, 10),
            Err(DownloadError::Unavailable {
                have: 3,
                need: 4,
                ..
            })
        ));
    }

    #[test]
    fn upload_below_write_quorum_fails_with_unavailable() {
        let t = Arc::new(Local::new(12));
        t.stop(0..7); // 5 of 12 up; quorum k + 2 = 6
        let err = block_on(upload(
            &*t,
            &cfg(65_536),
            &placement(),
            body(&object(1000), 100),
        ))
        .unwrap_err();
        assert!(matches!(
            err,
            UploadError::Unavailable {
                stored: 5,
                quorum: 6,
                ..
            }
        ));
        // At exactly the quorum the upload succeeds and records which fragments are missing.
        let t = Arc::new(Local::new(12));
        t.stop(0..6);
        let segs = block_on(upload(
            &*t,
            &cfg(65_536),
            &placement(),
            body(&object(1000), 100),
        ))
        .unwrap();
        assert_eq!(segs[0].stored_mask, 0b1111_1100_0000);
        assert_eq!(read_all(&t, &segs, 0, 1000).unwrap(), object(1000));
    }

    /// Runs `f` on a thread and waits at most 10 s for it (a hang fails the test).
    fn within_10s<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()).unwrap());
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("upload still waiting on a blackholed node")
    }

    /// Uploads `size` bytes while node 5 never completes a push; fails after 10 s.
    fn upload_with_node_5_blackholed(t: &Arc<Local>, size: usize) -> Vec<Segment> {
        t.stuck.lock().unwrap().insert([5; 32]);
        let t2 = t.clone();
        within_10s(move || {
            block_on(upload(
                &*t2,
                &cfg(65_536),
                &placement(),
                body(&object(size), 10_000),
            ))
        })
        .unwrap()
    }

    #[test]
    fn a_blackholed_node_costs_the_grace_not_the_upload() {
        let t = Arc::new(Local::new(12));
        let segs = upload_with_node_5_blackholed(&t, 100_000);
        // Every segment records fragment 5 as missing (for repair) and all others stored.
        assert!(segs.iter().all(|s| s.stored_mask == 0xfff & !(1 << 5)));
        assert_eq!(read_all(&t, &segs, 0, 100_000).unwrap(), object(100_000));
    }

    #[test]
    fn the_upload_grace_is_measured_on_the_transport_clock() {
        // Each push takes 300 ms of transport time; fragment 5 never completes. The quorum
        // (k + 2 = 6) is met after six pushes, 1,800 ms: the grace is twice that.
        let t = Arc::new(Local::new(12));
        t.push_cost_ms.store(300, Ordering::SeqCst);
        let segs = upload_with_node_5_blackholed(&t, 1000);
        assert_eq!(segs[0].stored_mask, 0xfff & !(1 << 5));
        assert_eq!(*t.delays_ms.lock().unwrap(), vec![3_600]);
    }

    #[test]
    fn the_quorum_must_survive_losing_one_failure_domain() {
        // Slots 0..8 in domain 0, 8..12 in domain 1; domain 1 is down. Eight stored
        // fragments beat the count (k + 2 = 6) but all sit in one domain.
        let mut c = cfg(65_536);
        c.fragment_domains = [0; 64];
        for d in &mut c.fragment_domains[8..12] {
            *d = 1;
        }
        let t = Arc::new(Local::new(12));
        t.stop(8..12);
        let err = block_on(upload(&*t, &c, &placement(), body(&object(1000), 100)));
        assert!(
            matches!(err, Err(UploadError::Unavailable { stored: 8, .. })),
            "{err:?}"
        );
        // Domain 0 down leaves 4 (below k + 2): refused. Two nodes of domain 0 down leaves
        // 6 + 4, which survives losing either domain.
        let t = Arc::new(Local::new(12));
        t.stop(0..8);
        assert!(block_on(upload(&*t, &c, &placement(), body(&object(1000), 100))).is_err());
        let t = Arc::new(Local::new(12));
        t.stop(0..2);
        let segs = block_on(upload(&*t, &c, &placement(), body(&object(1000), 100))).unwrap();
        assert_eq!(segs[0].stored_mask, 0xffc);
    }

    #[test]
    fn corrupted_fragments_are_skipped_never_served() {
        let t = Arc::new(Local::new(12));
        let data = object(30_000);
        let segs = block_on(upload(&*t, &cfg(65_536), &placement(), body(&data, 30_000))).unwrap();
        // Flip a byte in every data fragment on disk: reads must rebuild from parity.
        for i in 0..4u8 {
            let root = segs[0].fragment_roots[i as usize];
            let path = t.path(i, &root);
            let mut b = std::fs::read(&path).unwrap();
            b[0] ^= 1;
            std::fs::write(&path, b).unwrap();
            assert!(
                t.store(i).get(&root).is_err(),
                "store-side check also fails"
            );
        }
        assert_eq!(read_all(&t, &segs, 0, 30_000).unwrap(), data);
        // Each node that served rotten bytes was told so, with the root it failed.
        let mut reports = t.reports.lock().unwrap().clone();
        reports.sort();
        reports.dedup();
        let want: Vec<_> = (0..4u8)
            .map(|i| ([i; 32], segs[0].fragment_roots[i as usize]))
            .collect();
        assert_eq!(reports, want);
    }

    #[test]
    fn ranges_read_only_overlapping_segments() {
        let t = Arc::new(Local::new(12));
        let data = object(4 * 65_536);
        let segs = block_on(upload(&*t, &cfg(65_536), &placement(), body(&data, 65_536))).unwrap();
        t.gets.store(0, Ordering::SeqCst);
        let got = read_all(&t, &segs, 70_000, 70_100).unwrap();
        assert_eq!(got, &data[70_000..70_100]);
        assert_eq!(t.gets.load(Ordering::SeqCst), 4, "one segment, k fetches");
        for (s, e) in [(0, 1), (65_535, 65_537), (1, 4 * 65_536), (10, 10)] {
            assert_eq!(
                read_all(&t, &segs, s, e).unwrap(),
                &data[s as usize..e as usize]
            );
        }
        assert!(matches!(
            read_all(&t, &segs, 0, 4 * 65_536 + 1),
            Err(DownloadError::Range { .. })
        ));
    }

    #[test]
    fn objects_beyond_the_manifest_limit_are_refused() {
        let t = Arc::new(Local::new(12));
        let segment = 1_000;
        let max = segment * MAX_MANIFEST_SEGMENTS;
        let ok = block_on(upload(
            &*t,
            &cfg(segment),
            &placement(),
            body(&object(max), 4096),
        ));
        assert_eq!(ok.unwrap().len(), MAX_MANIFEST_SEGMENTS);
        let err = block_on(upload(
            &*t,
            &cfg(segment),
            &placement(),
            body(&object(max + 1), 4096),
        ));
        assert!(matches!(err, Err(UploadError::TooLarge { max_bytes }) if max_bytes == max as u64));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn any_m_failures_after_upload_still_read_back(
            len in 0usize..150_000,
            // At least 1_200 bytes, so 128 segments always hold `len` (oversize: its own test).
            segment in 1_200usize..70_000,
            chunk in 1usize..20_000,
            down in proptest::collection::btree_set(0u8..12, 0..=8),
            start_frac in 0.0f64..1.0,
        ) {
            let t = Arc::new(Local::new(12));
            let data = object(len);
            let segs = block_on(upload(&*t, &cfg(segment), &placement(), body(&data, chunk))).unwrap();
            proptest::prop_assert_eq!(segs.len(), len.div_ceil(segment));
            t.stop(down.iter().copied());
            let start = (len as f64 * start_frac) as u64;
            let got = read_all(&t, &segs, start, len as u64).unwrap();
            proptest::prop_assert_eq!(&got[..], &data[start as usize..]);
        }
    }

    #[test]
    fn bad_config_and_placement_are_errors() {
        let t = Arc::new(Local::new(12));
        let mut c = cfg(1024);
        c.write_quorum = 3;
        assert!(matches!(
            block_on(upload(&*t, &c, &placement(), body(b"x", 1))),
            Err(UploadError::Config(_))
        ));
        assert!(matches!(
            block_on(upload(&*t, &cfg(1024), &placement()[..11], body(b"x", 1))),
            Err(UploadError::Placement { got: 11, .. })
        ));
        let failing = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err("reset".to_string()),
        ]);
        assert!(matches!(
            block_on(upload(&*t, &cfg(1024), &placement(), failing)),
            Err(UploadError::Body(_))
        ));
    }
}
