//! Rough cost of the store's durable writes (one `fsync` each) and of its
//! reads, on the file system of the given directory (default: the system
//! temp dir; pass a directory on the disk the agent's data dir will use).
//!
//! ```sh
//! cargo run --release -p steward-store --example write_rate -- [DIR] [COUNT]
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark fails loudly when its setup fails"
)]

use std::time::{Duration, Instant};

use steward_store::Store;

fn rate(count: u32, elapsed: Duration) -> String {
    format!(
        "{:>8.0}/s ({:>7.1} µs each)",
        f64::from(count) / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / f64::from(count)
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), steward_store::Error> {
    let mut args = std::env::args().skip(1);
    let base = args.next().map_or_else(std::env::temp_dir, Into::into);
    let count: u32 = args.next().map_or(2000, |n| n.parse().expect("COUNT"));
    let dir = tempfile::tempdir_in(&base).expect("a temp dir in DIR");
    let store = Store::open(dir.path().join("state.redb")).await?;
    println!(
        "store at {}, {count} operations each",
        store.path().display()
    );

    let start = Instant::now();
    for i in 0..count {
        store.set_desired_version("echo", &i.to_string()).await?;
    }
    println!(
        "set_desired_version (durable) {}",
        rate(count, start.elapsed())
    );

    let start = Instant::now();
    for i in 0..count {
        store
            .storage_set("kv", &format!("key-{i}"), vec![0; 100])
            .await?;
    }
    println!(
        "storage_set, 100 B (durable)  {}",
        rate(count, start.elapsed())
    );

    let last = (count - 1).to_string();
    let start = Instant::now();
    for _ in 0..count {
        store.set_desired_version("echo", &last).await?;
    }
    println!(
        "set_desired_version, same    {}",
        rate(count, start.elapsed())
    );

    let start = Instant::now();
    for _ in 0..count {
        store.desired_version("echo").await?;
    }
    println!(
        "desired_version (read)       {}",
        rate(count, start.elapsed())
    );
    Ok(())
}
