//! `--dht-state FILE`: the DHT's id and contacts kept across runs, so a restart needs no
//! bootstrap router (Node's bittorrent-dht offers the same through `toJSON` / `nodes`).

use std::path::Path;
use std::time::Duration;
use swarm_core::dht::DhtState;

/// How often a running swarm writes its state, so a crash loses at most this much.
pub const SAVE_EVERY: Duration = Duration::from_secs(5 * 60);

/// The saved state, or `None` if there is none yet; a damaged file is reported and ignored.
pub fn load(path: &Path) -> Option<DhtState> {
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the DHT state");
            return None;
        }
    };
    match DhtState::decode(&data) {
        Ok(state) => {
            tracing::info!(contacts = state.contacts.len(), "DHT state restored");
            Some(state)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring the DHT state");
            None
        }
    }
}

/// Writes beside the file and renames, so a crash mid-write never leaves half a state.
pub fn save(path: &Path, state: &DhtState) {
    let tmp = path.with_extension("tmp");
    let result = std::fs::write(&tmp, state.encode()).and_then(|()| std::fs::rename(&tmp, path));
    match result {
        Ok(()) => tracing::debug!(contacts = state.contacts.len(), "DHT state saved"),
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot save the DHT state"),
    }
}
