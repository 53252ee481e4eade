//! The floor: a bare tokio accept-and-handshake loop with no swarm logic.
//!
//! Two worker threads; per accepted connection one task that writes its 33-byte handshake
//! (one write), reads and parses the peer's handshake, then reads until EOF (so it also
//! serves the held-connection phase). No handshake timer, no bookkeeping, no extra buffering:
//! one fixed buffer inside the task. Prints `listening <port>` when ready.

use clap::Parser;
use std::io::Write;
use swarm_bench::{complete_handshake, SplitMix64, HANDSHAKE_BUF_LEN, HANDSHAKE_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
#[command(about = "Bare tokio handshake server (benchmark floor)")]
struct Args {
    /// TCP port on 127.0.0.1 (0 = any free port)
    #[arg(long, default_value_t = 0)]
    port: u16,
}

async fn serve(mut sock: TcpStream, handshake: &'static [u8; HANDSHAKE_LEN]) {
    if sock.write_all(handshake).await.is_err() {
        return;
    }
    let mut buf = [0u8; HANDSHAKE_BUF_LEN];
    let mut filled = 0;
    loop {
        match sock.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        match complete_handshake(&buf[..filled]) {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(_) => return,
        }
    }
    // Handshaken: drain until the peer closes.
    loop {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let mut hs = [0u8; HANDSHAKE_LEN];
    SplitMix64::from_entropy(0xba5e).fill_handshake(&mut hs);
    let handshake: &'static [u8; HANDSHAKE_LEN] = Box::leak(Box::new(hs));

    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {port}")?;
        out.flush()?;
    }
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                tokio::spawn(serve(sock, handshake));
            }
            Err(e) => {
                // e.g. EMFILE: back off briefly instead of spinning.
                eprintln!("bare-server: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    swarm_bench::server_runtime()?.block_on(run(args))
}
