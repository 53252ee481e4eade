//! The runtimes the scenarios run on: tokio (swarm-tokio), smol and async-std (swarm-smol,
//! whose driver is spawned on async-std's own executor in the latter).

use crate::Harness;
use std::future::Future;
use std::io;
use std::pin::Pin;
use swarm_io::{Swarm, SwarmBuilder};

/// swarm-tokio on a multi-threaded tokio runtime.
pub struct TokioHarness;

impl Harness for TokioHarness {
    type R = swarm_tokio::Tokio;

    fn block_on<F: Future>(work: F) -> F::Output {
        tokio::runtime::Runtime::new()
            .expect("tokio runtime")
            .block_on(work)
    }

    fn spawn<T: Send + 'static>(
        work: impl Future<Output = T> + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = T> + Send>> {
        let task = tokio::spawn(work);
        Box::pin(async move { task.await.expect("task ran to completion") })
    }

    fn start(builder: SwarmBuilder<Self::R>) -> Swarm<Self::R> {
        builder.build().expect("swarm starts")
    }

    fn line_handshake(builder: SwarmBuilder<Self::R>, me: &'static str) -> SwarmBuilder<Self::R> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn exchange(
            mut stream: tokio::net::TcpStream,
            me: &'static str,
        ) -> swarm_tokio::HandshakeResult {
            stream.write_all(format!("{me}\n").as_bytes()).await?;
            let mut id = Vec::new();
            let mut byte = [0u8; 1];
            loop {
                stream.read_exact(&mut byte).await?;
                if byte[0] == b'\n' {
                    return Ok((stream, id, Some(b"key".to_vec())));
                }
                id.push(byte[0]);
            }
        }
        builder.external_handshake(move |stream, _info| exchange(stream, me))
    }
}

/// swarm-smol, its driver and tasks on smol's executor.
pub struct SmolHarness;

impl Harness for SmolHarness {
    type R = swarm_smol::Smol;

    fn block_on<F: Future>(work: F) -> F::Output {
        smol::block_on(work)
    }

    fn spawn<T: Send + 'static>(
        work: impl Future<Output = T> + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = T> + Send>> {
        Box::pin(smol::spawn(work))
    }

    fn start(builder: SwarmBuilder<Self::R>) -> Swarm<Self::R> {
        builder.build().expect("swarm starts")
    }

    fn line_handshake(builder: SwarmBuilder<Self::R>, me: &'static str) -> SwarmBuilder<Self::R> {
        builder.external_handshake(move |stream, _info| smol_line_exchange(stream, me))
    }
}

/// swarm-smol, its driver and tasks on async-std's executor.
pub struct AsyncStdHarness;

impl Harness for AsyncStdHarness {
    type R = swarm_smol::Smol;

    fn block_on<F: Future>(work: F) -> F::Output {
        async_std::task::block_on(work)
    }

    fn spawn<T: Send + 'static>(
        work: impl Future<Output = T> + Send + 'static,
    ) -> Pin<Box<dyn Future<Output = T> + Send>> {
        Box::pin(async_std::task::spawn(work))
    }

    fn start(builder: SwarmBuilder<Self::R>) -> Swarm<Self::R> {
        let (swarm, driver) = builder.build_driver().expect("swarm starts");
        async_std::task::spawn(driver);
        swarm
    }

    fn line_handshake(builder: SwarmBuilder<Self::R>, me: &'static str) -> SwarmBuilder<Self::R> {
        builder.external_handshake(move |stream, _info| smol_line_exchange(stream, me))
    }
}

async fn smol_line_exchange(
    mut stream: swarm_smol::HandshakeStream,
    me: &'static str,
) -> swarm_smol::HandshakeResult {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(format!("{me}\n").as_bytes()).await?;
    let mut id = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte).await?;
        if byte[0] == b'\n' {
            return Ok::<_, io::Error>((stream, id, Some(b"key".to_vec())));
        }
        id.push(byte[0]);
    }
}
