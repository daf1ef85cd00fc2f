//! shaper: the benches' proxy in front of fake-gcs-server (see the
//! library), and the floor they compare with.
//!
//!   shaper serve --upstream http://127.0.0.1:4443 --listen 127.0.0.1:9000
//!   shaper rewrite-all --endpoint http://127.0.0.1:9000 --pairs FILE --concurrency 64

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lifeboat_shaper::{Shaper, Shaping, rewrite_all};

#[derive(Parser, Debug)]
#[command(about = "Makes fake-gcs-server cost what Cloud Storage costs, for the benches")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serves the proxy until SIGTERM or Ctrl-C; prints `listening on ADDRESS`.
    Serve {
        /// fake-gcs-server's URL.
        #[arg(long)]
        upstream: String,
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The delay of every call, in milliseconds.
        #[arg(long, default_value_t = 25)]
        delay_ms: u64,
        /// How fast one rewrite copies, in MiB a second.
        #[arg(long, default_value_t = 100)]
        rewrite_mib_per_second: u64,
        /// The longest one rewrite call lasts, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        rewrite_call_ms: u64,
    },
    /// Rewrites every pair of FILE (lines `SOURCE_PATH DESTINATION_PATH`,
    /// e.g. `/storage/v1/b/src/o/a%2Fb /b/dst/o/a%2Fb`) through ENDPOINT,
    /// CONCURRENCY at a time, following tokens: the bare floor.
    RewriteAll {
        /// The proxy's (or fake-gcs-server's) URL.
        #[arg(long)]
        endpoint: String,
        /// The file of pairs.
        #[arg(long)]
        pairs: std::path::PathBuf,
        /// Rewrites in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve {
            upstream,
            listen,
            delay_ms,
            rewrite_mib_per_second,
            rewrite_call_ms,
        } => {
            let shaping = Shaping {
                delay: Duration::from_millis(delay_ms),
                rewrite_bytes_per_second: rewrite_mib_per_second << 20,
                rewrite_call: Duration::from_millis(rewrite_call_ms),
            };
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            println!("listening on {}", listener.local_addr()?);
            axum::serve(listener, Shaper::new(&upstream, shaping).router())
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
            Ok(())
        }
        Command::RewriteAll {
            endpoint,
            pairs,
            concurrency,
        } => {
            let text = std::fs::read_to_string(&pairs)
                .with_context(|| format!("reading {}", pairs.display()))?;
            let mut list = Vec::new();
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let (source, destination) = line.split_once(' ').with_context(|| {
                    format!(
                        "{}:{}: expected `SOURCE_PATH DESTINATION_PATH`",
                        pairs.display(),
                        number + 1
                    )
                })?;
                list.push((source.to_string(), destination.trim().to_string()));
            }
            rewrite_all(&endpoint, &list, concurrency)
                .await
                .map_err(anyhow::Error::msg)
        }
    }
}
