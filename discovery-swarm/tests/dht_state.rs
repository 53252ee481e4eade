//! `--dht-state`: a peer that saved its DHT contacts finds its topic again after a restart
//! with the bootstrap node gone (and the default public routers unresolvable, as inside the
//! isolated namespace), through the contacts alone; and a damaged file costs nothing.

mod support;

#[path = "support/cli_proc.rs"]
mod cli_proc;

use cli_proc::spawn as start;
use swarm_core::dht::DhtState;

fn port_of(line: &str) -> String {
    let start = line.find("\"port\":").unwrap() + 7;
    line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

#[test]
fn saved_contacts_find_the_topic_again_without_any_bootstrap() {
    if !support::isolated("saved_contacts_find_the_topic_again_without_any_bootstrap") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("dht-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("seeker.dht");
    let _ = std::fs::remove_file(&state);
    let state_arg = state.to_str().unwrap();

    let router = start(&["dht-node", "--port", "0"]);
    let bootstrap = format!("127.0.0.1:{}", port_of(&router.wait_for("listening", 10)));
    // A plain DHT node that joins through the router, so the announce is stored on a node
    // that outlives it.
    let witness = start(&["dht-node", "--port", "0", "--dht-bootstrap", &bootstrap]);
    witness.wait_for("listening", 10);
    // Rounds every second: whichever node joins late, the next round reaches it, so the test
    // waits on events, never on how long a bootstrap takes.
    let common = [
        "--json",
        "--no-mdns",
        "--no-utp",
        "--port",
        "0",
        "--dht-interval",
        "1",
    ];
    let announcer = start(
        &[
            &["join", "kept-topic"],
            &common[..],
            &["--dht-bootstrap", &bootstrap],
        ]
        .concat(),
    );
    announcer.wait_for("\"listening\"", 10);

    let seeker_args = [
        &["join", "kept-topic"],
        &common[..],
        &["--dht-state", state_arg],
    ]
    .concat();
    let seeker = start(&[&seeker_args[..], &["--dht-bootstrap", &bootstrap]].concat());
    seeker.wait_for("\"event\":\"connection\"", 30);
    seeker.sigterm();
    seeker.exit_ok();
    let saved = DhtState::decode(&std::fs::read(&state).unwrap()).unwrap();
    assert!(saved.contacts.len() >= 2, "{saved:?}");

    // The bootstrap node is gone; the restarted seeker keeps its id and reaches the announcer
    // through what it saved.
    drop(router);
    let restarted = start(&seeker_args);
    restarted.wait_for("\"event\":\"connection\"", 30);
    restarted.sigterm();
    restarted.exit_ok();
    let again = DhtState::decode(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(again.id, saved.id);
    drop(witness);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_state_file_is_ignored_not_fatal() {
    if !support::isolated("a_damaged_state_file_is_ignored_not_fatal") {
        return;
    }
    let path = std::env::temp_dir().join(format!("dht-state-bad-{}", std::process::id()));
    std::fs::write(&path, b"d2:id3:abce").unwrap();
    let peer = start(&[
        "join",
        "t",
        "--json",
        "--no-mdns",
        "--port",
        "0",
        "--dht-bootstrap",
        "127.0.0.1:9",
        "--dht-state",
        path.to_str().unwrap(),
    ]);
    peer.wait_for("\"listening\"", 10);
    peer.sigterm();
    peer.exit_ok();
    // Replaced by a good one on exit.
    assert!(DhtState::decode(&std::fs::read(&path).unwrap()).is_ok());
    let _ = std::fs::remove_file(&path);
}
