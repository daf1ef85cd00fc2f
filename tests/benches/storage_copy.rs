//! Server-side copy through the `ObjectStore` trait: one big object and many
//! small ones, for `LocalStore` (a temporary folder on disk) and `GcsStore`
//! (a fake-gcs-server of its own, filesystem backend), with this process's
//! peak resident memory per step (VmHWM, reset between steps).
//!
//! The sources are written with `put` from generated streams, so the upload
//! is measured too and must stay in bounded memory like the copy.
//!
//! `cargo bench -p lifeboat-tests --bench storage_copy`; sizes can be
//! changed with `LIFEBOAT_BENCH_BIG_MIB` (default 1024), `LIFEBOAT_BENCH_SMALL_COUNT`
//! (default 1000) and `LIFEBOAT_BENCH_SMALL_KIB` (default 4). Exits with an
//! error if any step's peak RSS reaches 64 MiB.

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use lifeboat_shared::gcp::ApiEndpoint;
use lifeboat_shared::storage::gcs::GcsStore;
use lifeboat_shared::storage::local::LocalStore;
use lifeboat_shared::storage::{
    ByteStream, CopyOptions, ObjectRef, ObjectStore, PutOptions, StorageError,
};
use lifeboat_tests::{FakeGcsServer, PROJECT, peak_rss_kib, reset_peak_rss};

/// The most this process may hold resident during any step.
const PEAK_RSS_LIMIT_KIB: u64 = 64 * 1024;

/// Chunk size of the generated upload streams.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Requests in flight for the many small objects.
const SMALL_CONCURRENCY: usize = 32;

struct Sizes {
    big_bytes: u64,
    small_count: usize,
    small_bytes: usize,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `len` bytes as a stream of chunks of at most 1 MiB cut from one buffer
/// of varied bytes: nothing but that one buffer is ever held.
fn generated_body(len: u64, seed: u8) -> ByteStream {
    let block_len = (len as usize).min(CHUNK_BYTES);
    let block: Bytes = (0..block_len)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into();
    let chunks = len.div_ceil(block_len.max(1) as u64);
    Box::pin(futures::stream::iter(0..chunks).map(move |index| {
        let start = index * CHUNK_BYTES as u64;
        let take = (len - start).min(block_len as u64) as usize;
        Ok(block.slice(..take))
    }))
}

/// One measured step, printed as a row.
struct Step<'a> {
    store: &'a str,
    what: String,
    objects: usize,
    bytes: u64,
    started: Instant,
}

impl<'a> Step<'a> {
    fn start(store: &'a str, what: String, objects: usize, bytes: u64) -> Self {
        reset_peak_rss();
        Self {
            store,
            what,
            objects,
            bytes,
            started: Instant::now(),
        }
    }

    /// Prints the row; returns the step's peak RSS in KiB.
    fn finish(self) -> u64 {
        let seconds = self.started.elapsed().as_secs_f64();
        let peak = peak_rss_kib();
        let mib = self.bytes as f64 / (1024.0 * 1024.0);
        println!(
            "{:<6} {:<34} {:>6} {:>10.1} MiB {:>8.2} s {:>9.1} MiB/s {:>9.1} obj/s {:>8.1} MiB",
            self.store,
            self.what,
            self.objects,
            mib,
            seconds,
            mib / seconds,
            self.objects as f64 / seconds,
            peak as f64 / 1024.0
        );
        peak
    }
}

/// Runs the four steps against `store`; returns the largest peak RSS seen.
async fn bench(label: &str, store: &dyn ObjectStore, sizes: &Sizes) -> Result<u64, StorageError> {
    let (a, b) = ("bench-src", "bench-dst");
    store.create_bucket(a, "europe-west4").await?;
    store.create_bucket(b, "us-central1").await?;
    let mut peak = 0;

    let big = ObjectRef::new(a, "big/object.bin");
    let step = Step::start(
        label,
        "put big (streamed upload)".into(),
        1,
        sizes.big_bytes,
    );
    let source = store
        .put(
            &big,
            generated_body(sizes.big_bytes, 1),
            PutOptions::default(),
        )
        .await?;
    peak = peak.max(step.finish());

    let replica_ref = ObjectRef::new(b, "big/object.bin");
    let step = Step::start(label, "copy big (server-side)".into(), 1, sizes.big_bytes);
    let replica = store
        .copy(&big, &replica_ref, CopyOptions::default())
        .await?;
    peak = peak.max(step.finish());
    if !source.verifies(&replica) {
        return Err(StorageError::Verification {
            object: replica_ref,
            detail: format!("{source:?} vs {replica:?}"),
        });
    }

    let small_total = (sizes.small_count * sizes.small_bytes) as u64;
    let pairs: Vec<(ObjectRef, ObjectRef)> = (0..sizes.small_count)
        .map(|index| {
            let name = format!("small/{index:05}");
            (ObjectRef::new(a, name.as_str()), ObjectRef::new(b, name))
        })
        .collect();
    let step = Step::start(
        label,
        format!("put {} small", sizes.small_count),
        sizes.small_count,
        small_total,
    );
    futures::stream::iter(pairs.iter())
        .map(|(source, _)| {
            store.put(
                source,
                generated_body(sizes.small_bytes as u64, 2),
                PutOptions::default(),
            )
        })
        .buffer_unordered(SMALL_CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    peak = peak.max(step.finish());

    let step = Step::start(
        label,
        format!("copy {} small (server-side)", sizes.small_count),
        sizes.small_count,
        small_total,
    );
    futures::stream::iter(pairs.iter())
        .map(|(source, destination)| store.copy(source, destination, CopyOptions::default()))
        .buffer_unordered(SMALL_CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    peak = peak.max(step.finish());
    Ok(peak)
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let sizes = Sizes {
        big_bytes: env_number("LIFEBOAT_BENCH_BIG_MIB", 1024) * 1024 * 1024,
        small_count: env_number("LIFEBOAT_BENCH_SMALL_COUNT", 1000) as usize,
        small_bytes: env_number("LIFEBOAT_BENCH_SMALL_KIB", 4) as usize * 1024,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{:<6} {:<34} {:>6} {:>14} {:>10} {:>15} {:>13} {:>12}",
        "store", "step", "objs", "bytes", "time", "throughput", "rate", "peak RSS"
    );
    let outcome = runtime.block_on(async {
        let local_root = tempfile::tempdir().map_err(|error| format!("tempdir: {error}"))?;
        let local = LocalStore::open(local_root.path())
            .await
            .map_err(|error| error.to_string())?;
        let local_peak = bench("local", &local, &sizes)
            .await
            .map_err(|error| error.to_string())?;
        drop(local_root);

        let gcs_root = tempfile::tempdir().map_err(|error| format!("tempdir: {error}"))?;
        let server = FakeGcsServer::start(gcs_root.path());
        let gcs = GcsStore::new(ApiEndpoint::emulator(server.host()), PROJECT);
        let gcs_peak = bench("gcs", &gcs, &sizes)
            .await
            .map_err(|error| error.to_string())?;
        Ok::<_, String>(local_peak.max(gcs_peak))
    });
    match outcome {
        Ok(peak) if peak < PEAK_RSS_LIMIT_KIB => ExitCode::SUCCESS,
        Ok(peak) => {
            eprintln!(
                "peak RSS {:.1} MiB is not under {} MiB: memory is not bounded",
                peak as f64 / 1024.0,
                PEAK_RSS_LIMIT_KIB / 1024
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("benchmark failed: {error}");
            ExitCode::FAILURE
        }
    }
}
