//! `--pipe`: stdin goes to every connection, every connection's data to stdout, as it arrives.

use bytes::Bytes;
use std::sync::{Arc, Mutex};
use swarm_io::{ConnId, Connection, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const CHUNK: usize = 64 * 1024;
/// Chunks in flight per connection: bounds memory and applies backpressure to stdin.
const DEPTH: usize = 8;

type Writers = Arc<Mutex<Vec<(ConnId, mpsc::Sender<Bytes>)>>>;

pub struct Pipe {
    writers: Writers,
    stdout: mpsc::Sender<Bytes>,
}

impl Pipe {
    pub fn start() -> Pipe {
        let writers: Writers = Arc::default();
        let (stdout, mut chunks) = mpsc::channel::<Bytes>(DEPTH);
        tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            while let Some(chunk) = chunks.recv().await {
                if out.write_all(&chunk).await.is_err() || out.flush().await.is_err() {
                    break;
                }
            }
        });
        let readers = writers.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; CHUNK];
            while let Ok(n @ 1..) = stdin.read(&mut buf).await {
                let chunk = Bytes::copy_from_slice(&buf[..n]);
                let targets: Vec<_> = lock(&readers).iter().map(|(_, tx)| tx.clone()).collect();
                for tx in targets {
                    let _ = tx.send(chunk.clone()).await;
                }
            }
            // End of input: half-close every connection.
            lock(&readers).clear();
        });
        Pipe { writers, stdout }
    }

    pub fn attach<R: Runtime>(&self, conn: Connection<R>) {
        let id = conn.id();
        let (mut reader, mut writer) = tokio::io::split(conn);
        let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
        lock(&self.writers).push((id, tx));
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if writer.write_all(&chunk).await.is_err() {
                    return;
                }
            }
            let _ = writer.shutdown().await;
        });
        let stdout = self.stdout.clone();
        let writers = self.writers.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            while let Ok(n @ 1..) = reader.read(&mut buf).await {
                if stdout
                    .send(Bytes::copy_from_slice(&buf[..n]))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            lock(&writers).retain(|(c, _)| *c != id);
        });
    }
}

/// Without `--pipe`: read and discard, so a close by the peer is noticed.
pub fn drain<R: Runtime>(mut conn: Connection<R>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(1..) = conn.read(&mut buf).await {}
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
