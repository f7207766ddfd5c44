//! `cairn bench storage`: the storage data path against this machine's raw references, all
//! measured in the same run.
//!
//! References: raw RS(k, m) encode with `reed-solomon-simd` alone, sequential disk write
//! (write + fsync of one file) and sequential read (a fresh file, page cache dropped with
//! `posix_fadvise(DONTNEED)`). Measured path: Cairn's encode plus BLAKE3 Merkle roots of every
//! fragment, and the local fragment store's durable writes (temp file, fsync, rename, dir
//! fsync) and verified reads of those fragments. Each figure is printed with its ratio to its
//! reference.

use cairn_storage::{erasure, merkle, Coding, FragmentStore};
use std::{io::Write, os::fd::AsRawFd, path::PathBuf, time::Instant};

/// Arguments of `cairn bench storage`.
#[derive(clap::Args, Clone, Debug)]
pub struct StorageArgs {
    /// Segment size in MiB (the default is DESIGN.md's 32 MiB segment).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=32))]
    pub segment_mib: u64,
    /// Segments per phase.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub segments: u64,
    /// Directory for the disk phases (a temporary directory under it is removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
}

fn drop_cache(f: &std::fs::File) {
    // SAFETY: valid fd; advisory call with no memory effects.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// Runs the benchmark and prints its figures.
pub fn storage(args: StorageArgs) -> Result<(), String> {
    let coding = Coding::DEFAULT;
    let size = (args.segment_mib << 20) as usize;
    let total = size as u64 * args.segments;
    let mut segment = vec![0u8; size];
    blake3::Hasher::new()
        .update(b"cairn bench storage")
        .finalize_xof()
        .fill(&mut segment);
    let work = tempfile_dir(&args.dir)?;
    let result = (|| {
        // Reference 1: raw Reed-Solomon encode.
        let frag = coding.fragment_size(size);
        let shards: Vec<&[u8]> = segment.chunks(frag).collect();
        let t = Instant::now();
        for _ in 0..args.segments {
            reed_solomon_simd::encode(coding.data as usize, coding.parity as usize, &shards)
                .map_err(|e| e.to_string())?;
        }
        let raw_encode = mbps(total, t.elapsed().as_secs_f64());
        // Measured: Cairn encode + Merkle roots of all 12 fragments.
        let t = Instant::now();
        let mut fragments = Vec::new();
        for _ in 0..args.segments {
            fragments = erasure::encode(coding, &segment).map_err(|e| e.to_string())?;
            let _roots: Vec<_> = fragments.iter().map(|f| merkle::root_of(f)).collect();
        }
        let cairn_encode = mbps(total, t.elapsed().as_secs_f64());

        // Reference 2: sequential write + fsync, then cold sequential read, of `total` bytes.
        let path = work.join("seq.bin");
        let t = Instant::now();
        let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
        for _ in 0..args.segments {
            f.write_all(&segment).map_err(|e| e.to_string())?;
        }
        f.sync_all().map_err(|e| e.to_string())?;
        let disk_write = mbps(total, t.elapsed().as_secs_f64());
        drop_cache(&f);
        drop(f);
        let t = Instant::now();
        let read = std::fs::read(&path).map_err(|e| e.to_string())?;
        let disk_read = mbps(read.len() as u64, t.elapsed().as_secs_f64());
        drop(read);

        // Measured: the fragment store writes all k + m fragments of each segment durably, then
        // reads back and verifies k of them per segment (what a GET needs).
        let store = FragmentStore::open(&work.join("fragments"), 16).map_err(|e| e.to_string())?;
        let mut roots = Vec::new();
        let t = Instant::now();
        for s in 0..args.segments {
            // Vary one byte per segment so every segment has distinct fragments.
            let mut frags = fragments.clone();
            for f in &mut frags {
                f[0] = s as u8;
            }
            for f in &frags {
                let root = merkle::root_of(f);
                store.put(&root, f).map_err(|e| e.to_string())?;
                roots.push(root);
            }
        }
        let stored: u64 = total * coding.total() as u64 / coding.data as u64;
        let store_write = mbps(total, t.elapsed().as_secs_f64());
        let t = Instant::now();
        for seg_roots in roots.chunks(coding.total()) {
            for root in &seg_roots[..coding.data as usize] {
                store.get(root).map_err(|e| e.to_string())?;
            }
        }
        let store_read = mbps(total, t.elapsed().as_secs_f64());

        println!(
            "bench storage: RS({}, {}), {} segments of {} MiB ({} MiB of object data, {} MiB of fragments)",
            coding.data,
            coding.parity,
            args.segments,
            args.segment_mib,
            total >> 20,
            stored >> 20
        );
        println!("  reference  RS encode (reed-solomon-simd alone)  {raw_encode:>8.0} MB/s of object data");
        println!("  cairn      encode + Merkle roots                {cairn_encode:>8.0} MB/s  ({:.2}x reference)", cairn_encode / raw_encode);
        println!("  reference  disk sequential write + fsync        {disk_write:>8.0} MB/s");
        println!("  cairn      durable fragment writes (12 files)   {store_write:>8.0} MB/s of object data  ({:.2}x reference; writes 3x the bytes)", store_write / disk_write);
        println!("  reference  disk sequential read (cold)          {disk_read:>8.0} MB/s");
        println!("  cairn      verified fragment reads (k of 12)    {store_read:>8.0} MB/s of object data  ({:.2}x reference)", store_read / disk_read);
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn tempfile_dir(base: &std::path::Path) -> Result<PathBuf, String> {
    let dir = base.join(format!(".cairn-bench-storage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
