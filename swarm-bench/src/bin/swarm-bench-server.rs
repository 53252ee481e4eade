//! Our swarm as the benchmark's server: listens, joins nothing, and serves every connection the
//! way `bare-server` does (read until EOF, then drop). Prints `listening <port>` when ready.

use clap::Parser;
use futures_util::StreamExt;
use std::io::Write;
use swarm_bench::HANDSHAKE_BUF_LEN;
use swarm_tokio::{SwarmBuilder, SwarmEvent};
use tokio::io::AsyncReadExt;

#[derive(Parser, Debug)]
#[command(about = "discovery-swarm (Rust) handshake server for the benchmark")]
struct Args {
    /// TCP port (0 = any free port)
    #[arg(long, default_value_t = 0)]
    port: u16,
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut swarm = SwarmBuilder::new().mdns(false).build()?;
    let port = swarm.listen(args.port).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {port}")?;
        out.flush()?;
    }
    while let Some(event) = swarm.next().await {
        if let SwarmEvent::Connection(mut conn) = event {
            tokio::spawn(async move {
                let mut buf = [0u8; HANDSHAKE_BUF_LEN];
                while let Ok(1..) = conn.read(&mut buf).await {}
            });
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    swarm_bench::server_runtime()?.block_on(run(args))
}
