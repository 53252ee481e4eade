//! Event lines: JSON objects (`--json`) or text, on stdout (stderr with `--pipe`).

use serde_json::{json, Map, Value};
use std::io::Write;
use swarm_io::{ConnId, ConnInfo, Connection, Event, PeerInfo, Runtime};

pub struct Printer {
    json: bool,
    to_stderr: bool,
}

fn hex_or_null(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Null, |b| Value::String(hex::encode(b)))
}

fn peer_fields(peer: &PeerInfo) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("host".into(), json!(peer.addr.ip().to_string()));
    map.insert("port".into(), json!(peer.addr.port()));
    map.insert("topic".into(), hex_or_null(peer.topic.as_deref()));
    map.insert("retries".into(), json!(peer.retries));
    map
}

fn conn_fields(conn: ConnId, info: &ConnInfo, local: Option<u16>) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("conn".into(), json!(conn.0));
    map.insert("type".into(), json!(info.transport.as_str()));
    map.insert("initiator".into(), json!(info.initiator));
    map.insert("host".into(), json!(info.addr.ip().to_string()));
    map.insert("port".into(), json!(info.addr.port()));
    map.insert(
        "local_port".into(),
        local.map_or(Value::Null, |port| json!(port)),
    );
    map.insert("id".into(), hex_or_null(info.id.as_deref()));
    map.insert("topic".into(), hex_or_null(info.topic.as_deref()));
    map
}

impl Printer {
    pub fn new(json: bool, to_stderr: bool) -> Self {
        Printer { json, to_stderr }
    }

    /// The `connection` event's fields, to be written with [`Printer::write`].
    pub fn connection_line<R: Runtime>(&self, conn: &Connection<R>) -> Map<String, Value> {
        let local_port = conn.local_addr().ok().map(|a| a.port());
        event_line(
            "connection",
            conn_fields(conn.id(), conn.info(), local_port),
        )
    }

    pub fn event(&self, event: &Event, local: Option<u16>) {
        let fields = match event {
            Event::Listening { port } => {
                let mut map = Map::new();
                map.insert("port".into(), json!(port));
                map
            }
            Event::Peer(peer) | Event::Drop(peer) | Event::Connecting(peer) => peer_fields(peer),
            Event::ConnectFailed { peer, timed_out } => {
                let mut map = peer_fields(peer);
                map.insert("timedout".into(), json!(timed_out));
                map
            }
            Event::PeerRejected {
                addr,
                topic,
                reason,
            } => {
                let mut map = Map::new();
                map.insert("host".into(), json!(addr.ip().to_string()));
                map.insert("port".into(), json!(addr.port()));
                map.insert("topic".into(), hex_or_null(topic.as_deref()));
                map.insert("reason".into(), json!(reason.as_str()));
                map
            }
            Event::Joined { topic } => {
                let mut map = Map::new();
                map.insert("topic".into(), json!(hex::encode(topic)));
                map
            }
            Event::PeerBanned { peer, reason } => {
                let mut map = peer_fields(peer);
                map.insert("reason".into(), json!(reason.as_str()));
                map
            }
            Event::Handshaking { conn, info }
            | Event::HandshakeTimeout { conn, info }
            | Event::RedundantConnection { conn, info }
            | Event::ConnectionClosed { conn, info }
            | Event::Connection { conn, info, .. } => conn_fields(*conn, info, local),
            Event::HandshakeFailed { conn, info, error } => {
                let mut map = conn_fields(*conn, info, local);
                map.insert("error".into(), json!(error.to_string()));
                map
            }
            _ => Map::new(),
        };
        self.emit(event.name(), fields);
    }

    fn emit(&self, name: &str, fields: Map<String, Value>) {
        self.write(event_line(name, fields));
    }

    pub fn write(&self, fields: Map<String, Value>) {
        let line = if self.json {
            Value::Object(fields).to_string()
        } else {
            human(&fields)
        };
        let result = if self.to_stderr {
            writeln!(std::io::stderr().lock(), "{line}")
        } else {
            writeln!(std::io::stdout().lock(), "{line}")
        };
        // A closed output (e.g. `| head`) is not worth a panic.
        let _ = result;
    }
}

fn event_line(name: &str, fields: Map<String, Value>) -> Map<String, Value> {
    let mut line = Map::new();
    line.insert("event".into(), json!(name));
    line.extend(fields);
    line
}

fn human(fields: &Map<String, Value>) -> String {
    let mut line = String::new();
    for (key, value) in fields {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        if key == "event" {
            line.push_str(&text);
        } else {
            line.push_str(&format!(" {key}={text}"));
        }
    }
    line
}
