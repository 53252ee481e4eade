//! Our swarm as the benchmark's server: listens, joins nothing, and serves every connection the
//! way `bare-server` does (read until EOF, then drop). Prints `listening <port>` when ready.
//! `--runtime tokio` (2 workers) or `--runtime smol` (an executor on 2 threads): the same
//! swarm-io driver on either, so the two adapters are measured against each other.

use clap::{Parser, ValueEnum};
use futures_lite::{AsyncReadExt, StreamExt};
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use swarm_bench::HANDSHAKE_BUF_LEN;
use swarm_io::{Runtime, Swarm, SwarmEvent};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Which {
    Tokio,
    Smol,
}

#[derive(Parser, Debug)]
#[command(about = "discovery-swarm (Rust) handshake server for the benchmark")]
struct Args {
    /// TCP port (0 = any free port)
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The runtime adapter to drive the swarm with.
    #[arg(long, value_enum, default_value = "tokio")]
    runtime: Which,
}

type Spawn = Arc<dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>) + Send + Sync>;

async fn serve<R: Runtime>(mut swarm: Swarm<R>, port: u16, spawn: Spawn) -> std::io::Result<()> {
    let port = swarm.listen(port).await.map_err(std::io::Error::other)?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {port}")?;
        out.flush()?;
    }
    while let Some(event) = swarm.next().await {
        if let SwarmEvent::Connection(mut conn) = event {
            spawn(Box::pin(async move {
                let mut buf = [0u8; HANDSHAKE_BUF_LEN];
                while let Ok(1..) = conn.read(&mut buf).await {}
            }));
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    match args.runtime {
        Which::Tokio => {
            let runtime = swarm_bench::server_runtime()?;
            let spawn: Spawn = Arc::new(|task| drop(tokio::spawn(task)));
            runtime.block_on(async {
                let swarm = swarm_tokio::SwarmBuilder::new()
                    .mdns(false)
                    .build()
                    .map_err(std::io::Error::other)?;
                serve(swarm, args.port, spawn).await
            })?;
        }
        Which::Smol => {
            let executor = Arc::new(smol::Executor::new());
            let (_stop, stopped) = smol::channel::bounded::<()>(1);
            let helper = {
                let executor = executor.clone();
                let stopped = stopped.clone();
                std::thread::spawn(move || smol::block_on(executor.run(stopped.recv())))
            };
            let (swarm, driver) = swarm_smol::SwarmBuilder::new().mdns(false).build_driver()?;
            executor.spawn(driver).detach();
            let on = executor.clone();
            let spawn: Spawn = Arc::new(move |task| on.spawn(task).detach());
            smol::block_on(executor.run(serve(swarm, args.port, spawn)))?;
            drop(helper);
        }
    }
    Ok(())
}
