//! KRPC (BEP 5): the four DHT queries, their responses and errors, over strict bencode.
//!
//! Parsing is typed: a wrong type or a missing key is an error, unknown keys are ignored
//! (newer extensions add some), and `t` is kept as the borrowed bytes so a reply can echo it
//! verbatim. A parse error of something that was recognisably a query carries its `t`, so the
//! responder can answer with error 203 or 204.

use super::bencode::{self, DecodeError, Limits, Value};
use super::NodeId;
use core::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Longest transaction id we echo. Clients use 2 to 4 bytes; echoing a longer one would let a
/// sender make our replies larger than needed.
pub const MAX_T_LEN: usize = 16;
/// Compact node info: id, IPv4, port.
pub const COMPACT_NODE_LEN: usize = 26;
/// Compact peer info: IPv4, port.
pub const COMPACT_PEER_LEN: usize = 6;

/// Error codes of BEP 5.
pub const ERROR_GENERIC: i64 = 201;
pub const ERROR_SERVER: i64 = 202;
pub const ERROR_PROTOCOL: i64 = 203;
pub const ERROR_METHOD_UNKNOWN: i64 = 204;

/// One decoded KRPC message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// Transaction id, 1..=[`MAX_T_LEN`] bytes.
    pub t: &'a [u8],
    pub body: Body<'a>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    Query {
        id: NodeId,
        /// BEP 43 read-only sender: answer it, but keep it out of the routing table.
        read_only: bool,
        query: Query<'a>,
    },
    Response(Response<'a>),
    Error {
        code: i64,
        message: &'a [u8],
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query<'a> {
    Ping,
    FindNode {
        target: NodeId,
    },
    GetPeers {
        info_hash: NodeId,
    },
    AnnouncePeer {
        info_hash: NodeId,
        /// As sent; the responder checks its range (BEP 5 lets `implied_port` replace it).
        port: Option<i64>,
        implied_port: bool,
        token: &'a [u8],
    },
}

/// The fields of any response we use; which ones are present depends on the query.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Response<'a> {
    pub id: NodeId,
    /// Compact node infos (see [`compact_nodes`]), empty when absent.
    pub nodes: &'a [u8],
    pub token: Option<&'a [u8]>,
    /// Compact peers that are 6 bytes long; others (IPv6, garbage) are skipped.
    pub values: Vec<SocketAddrV4>,
}

/// Why a datagram is not a usable KRPC message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KrpcError {
    Bencode(DecodeError),
    NotADict,
    /// A required key is absent.
    Missing(&'static str),
    /// A key holds the wrong bencode type.
    WrongType(&'static str),
    /// An id, target or info-hash that is not 20 bytes.
    BadId(&'static str),
    /// `t` is empty or longer than [`MAX_T_LEN`].
    BadTransaction,
    /// `y` is not `q`, `r` or `e`.
    UnknownType,
    /// A query method we do not implement (error 204).
    UnknownMethod,
}

impl fmt::Display for KrpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KrpcError::Bencode(e) => write!(f, "{e}"),
            KrpcError::NotADict => write!(f, "message is not a dictionary"),
            KrpcError::Missing(k) => write!(f, "missing key {k}"),
            KrpcError::WrongType(k) => write!(f, "wrong type for key {k}"),
            KrpcError::BadId(k) => write!(f, "{k} is not 20 bytes"),
            KrpcError::BadTransaction => write!(f, "bad transaction id"),
            KrpcError::UnknownType => write!(f, "unknown message type"),
            KrpcError::UnknownMethod => write!(f, "method unknown"),
        }
    }
}

impl std::error::Error for KrpcError {}

/// A rejected message; `query_t` is set when it was a query whose `t` we can echo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError<'a> {
    pub error: KrpcError,
    pub query_t: Option<&'a [u8]>,
}

impl ParseError<'_> {
    /// Whether the input was a bencoded dictionary, which Node's k-rpc-socket takes as KRPC
    /// (however malformed); anything else on the port belongs to another protocol.
    pub fn is_dict(&self) -> bool {
        !matches!(self.error, KrpcError::Bencode(_) | KrpcError::NotADict)
    }

    /// The BEP 5 error code for a reply, if one is due.
    pub fn reply_code(&self) -> Option<i64> {
        self.query_t?;
        Some(match self.error {
            KrpcError::UnknownMethod => ERROR_METHOD_UNKNOWN,
            _ => ERROR_PROTOCOL,
        })
    }
}

fn bytes<'a>(v: &Value<'a>, key: &'static str) -> Result<Option<&'a [u8]>, KrpcError> {
    match v.get(key.as_bytes()) {
        None => Ok(None),
        Some(x) => x.as_bytes().map(Some).ok_or(KrpcError::WrongType(key)),
    }
}

fn req_bytes<'a>(v: &Value<'a>, key: &'static str) -> Result<&'a [u8], KrpcError> {
    bytes(v, key)?.ok_or(KrpcError::Missing(key))
}

fn int(v: &Value<'_>, key: &'static str) -> Result<Option<i64>, KrpcError> {
    match v.get(key.as_bytes()) {
        None => Ok(None),
        Some(x) => x.as_int().map(Some).ok_or(KrpcError::WrongType(key)),
    }
}

fn id(v: &Value<'_>, key: &'static str) -> Result<NodeId, KrpcError> {
    NodeId::from_slice(req_bytes(v, key)?).ok_or(KrpcError::BadId(key))
}

fn dict<'v, 'a>(v: &'v Value<'a>, key: &'static str) -> Result<&'v Value<'a>, KrpcError> {
    match v.get(key.as_bytes()) {
        None => Err(KrpcError::Missing(key)),
        Some(d @ Value::Dict(_)) => Ok(d),
        Some(_) => Err(KrpcError::WrongType(key)),
    }
}

/// Decodes one datagram.
pub fn parse(input: &[u8]) -> Result<Message<'_>, ParseError<'_>> {
    let fail = |error| ParseError {
        error,
        query_t: None,
    };
    let root = bencode::parse(input, Limits::KRPC).map_err(|e| fail(KrpcError::Bencode(e)))?;
    if !matches!(root, Value::Dict(_)) {
        return Err(fail(KrpcError::NotADict));
    }
    let t = req_bytes(&root, "t").map_err(fail)?;
    if t.is_empty() || t.len() > MAX_T_LEN {
        return Err(fail(KrpcError::BadTransaction));
    }
    let y = req_bytes(&root, "y").map_err(fail)?;
    let body = match y {
        b"q" => parse_query(&root).map_err(|error| ParseError {
            error,
            query_t: Some(t),
        })?,
        b"r" => parse_response(&root).map_err(fail)?,
        b"e" => parse_error(&root).map_err(fail)?,
        _ => return Err(fail(KrpcError::UnknownType)),
    };
    Ok(Message { t, body })
}

fn parse_query<'a>(root: &Value<'a>) -> Result<Body<'a>, KrpcError> {
    let q = req_bytes(root, "q")?;
    let a = dict(root, "a")?;
    let sender = id(a, "id")?;
    let query = match q {
        b"ping" => Query::Ping,
        b"find_node" => Query::FindNode {
            target: id(a, "target")?,
        },
        b"get_peers" => Query::GetPeers {
            info_hash: id(a, "info_hash")?,
        },
        b"announce_peer" => Query::AnnouncePeer {
            info_hash: id(a, "info_hash")?,
            port: int(a, "port")?,
            implied_port: int(a, "implied_port")?.unwrap_or(0) != 0,
            token: req_bytes(a, "token")?,
        },
        _ => return Err(KrpcError::UnknownMethod),
    };
    Ok(Body::Query {
        id: sender,
        read_only: int(root, "ro")?.unwrap_or(0) == 1,
        query,
    })
}

fn parse_response<'a>(root: &Value<'a>) -> Result<Body<'a>, KrpcError> {
    let r = dict(root, "r")?;
    let values = match r.get(b"values") {
        None => Vec::new(),
        Some(Value::List(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let b = item.as_bytes().ok_or(KrpcError::WrongType("values"))?;
                if b.len() == COMPACT_PEER_LEN {
                    out.push(compact_peer(b));
                }
            }
            out
        }
        Some(_) => return Err(KrpcError::WrongType("values")),
    };
    Ok(Body::Response(Response {
        id: id(r, "id")?,
        nodes: bytes(r, "nodes")?.unwrap_or_default(),
        token: bytes(r, "token")?,
        values,
    }))
}

fn parse_error<'a>(root: &Value<'a>) -> Result<Body<'a>, KrpcError> {
    match root.get(b"e") {
        Some(Value::List(items)) => match items.as_slice() {
            [Value::Int(code), Value::Bytes(message), ..] => Ok(Body::Error {
                code: *code,
                message,
            }),
            [Value::Int(code)] => Ok(Body::Error {
                code: *code,
                message: b"",
            }),
            _ => Err(KrpcError::WrongType("e")),
        },
        Some(_) => Err(KrpcError::WrongType("e")),
        None => Err(KrpcError::Missing("e")),
    }
}

fn compact_peer(b: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

/// The entries of a compact `nodes` string. As Node does, entries with port 0 are skipped and
/// a truncated final entry is ignored.
pub fn compact_nodes(nodes: &[u8]) -> impl Iterator<Item = (NodeId, SocketAddrV4)> + '_ {
    nodes.chunks_exact(COMPACT_NODE_LEN).filter_map(|c| {
        let addr = compact_peer(&c[20..]);
        (addr.port() != 0).then(|| (NodeId::from_slice(&c[..20]).unwrap_or_default(), addr))
    })
}

/// Appends the compact form of a node.
pub fn push_compact_node(out: &mut Vec<u8>, id: &NodeId, addr: SocketAddrV4) {
    out.extend_from_slice(&id.0);
    push_compact_peer(out, addr);
}

/// Appends the compact form of a peer.
pub fn push_compact_peer(out: &mut Vec<u8>, addr: SocketAddrV4) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Appends a query; keys in canonical order.
pub fn emit_query(out: &mut Vec<u8>, t: &[u8], id: &NodeId, query: &Query<'_>) {
    out.extend_from_slice(b"d1:ad2:id");
    bencode::bytes(out, &id.0);
    let method: &[u8] = match query {
        Query::Ping => b"ping",
        Query::FindNode { target } => {
            out.extend_from_slice(b"6:target");
            bencode::bytes(out, &target.0);
            b"find_node"
        }
        Query::GetPeers { info_hash } => {
            out.extend_from_slice(b"9:info_hash");
            bencode::bytes(out, &info_hash.0);
            b"get_peers"
        }
        Query::AnnouncePeer {
            info_hash,
            port,
            implied_port,
            token,
        } => {
            out.extend_from_slice(b"12:implied_port");
            bencode::int(out, i64::from(*implied_port));
            out.extend_from_slice(b"9:info_hash");
            bencode::bytes(out, &info_hash.0);
            if let Some(port) = port {
                out.extend_from_slice(b"4:port");
                bencode::int(out, *port);
            }
            out.extend_from_slice(b"5:token");
            bencode::bytes(out, token);
            b"announce_peer"
        }
    };
    out.extend_from_slice(b"e1:q");
    bencode::bytes(out, method);
    out.extend_from_slice(b"1:t");
    bencode::bytes(out, t);
    out.extend_from_slice(b"1:y1:qe");
}

/// Appends a response. `nodes` is already compact; `values` become 6-byte strings.
pub fn emit_response(
    out: &mut Vec<u8>,
    t: &[u8],
    id: &NodeId,
    nodes: Option<&[u8]>,
    token: Option<&[u8]>,
    values: &[SocketAddrV4],
) {
    out.extend_from_slice(b"d1:rd2:id");
    bencode::bytes(out, &id.0);
    if let Some(nodes) = nodes {
        out.extend_from_slice(b"5:nodes");
        bencode::bytes(out, nodes);
    }
    if let Some(token) = token {
        out.extend_from_slice(b"5:token");
        bencode::bytes(out, token);
    }
    if !values.is_empty() {
        out.extend_from_slice(b"6:valuesl");
        for v in values {
            out.extend_from_slice(b"6:");
            push_compact_peer(out, *v);
        }
        out.push(b'e');
    }
    out.extend_from_slice(b"e1:t");
    bencode::bytes(out, t);
    out.extend_from_slice(b"1:y1:re");
}

/// Appends an error reply.
pub fn emit_error(out: &mut Vec<u8>, t: &[u8], code: i64, message: &[u8]) {
    out.extend_from_slice(b"d1:eli");
    out.extend_from_slice(itoa::Buffer::new().format(code).as_bytes());
    out.push(b'e');
    bencode::bytes(out, message);
    out.extend_from_slice(b"e1:t");
    bencode::bytes(out, t);
    out.extend_from_slice(b"1:y1:ee");
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::quickcheck;

    fn id(b: u8) -> NodeId {
        NodeId([b; 20])
    }

    #[test]
    fn parses_node_announce_verbatim() {
        // PROTOCOLS.md 4.1, as sent by Node.
        let mut wire = b"d1:ad2:id20:".to_vec();
        wire.extend_from_slice(&[1; 20]);
        wire.extend_from_slice(b"12:implied_porti0e9:info_hash20:");
        wire.extend_from_slice(&[2; 20]);
        wire.extend_from_slice(b"4:porti7001e5:token20:");
        wire.extend_from_slice(&[3; 20]);
        wire.extend_from_slice(b"e1:q13:announce_peer1:t2:\x00\x031:y1:qe");
        let msg = parse(&wire).unwrap();
        let query = Query::AnnouncePeer {
            info_hash: id(2),
            port: Some(7001),
            implied_port: false,
            token: &[3; 20],
        };
        assert_eq!(
            msg,
            Message {
                t: b"\x00\x03",
                body: Body::Query {
                    id: id(1),
                    read_only: false,
                    query: query.clone()
                }
            }
        );
        let mut out = Vec::new();
        emit_query(&mut out, b"\x00\x03", &id(1), &query);
        assert_eq!(out, wire);
    }

    #[test]
    fn every_query_round_trips() {
        let token = [9u8; 8];
        let queries = [
            Query::Ping,
            Query::FindNode { target: id(5) },
            Query::GetPeers { info_hash: id(6) },
            Query::AnnouncePeer {
                info_hash: id(7),
                port: None,
                implied_port: true,
                token: &token,
            },
        ];
        for query in queries {
            let mut out = Vec::new();
            emit_query(&mut out, b"ab", &id(1), &query);
            let msg = parse(&out).unwrap();
            assert_eq!(msg.t, b"ab");
            assert_eq!(
                msg.body,
                Body::Query {
                    id: id(1),
                    read_only: false,
                    query
                }
            );
        }
    }

    #[test]
    fn response_and_error_round_trip() {
        let peer = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 7001);
        let mut nodes = Vec::new();
        push_compact_node(&mut nodes, &id(4), peer);
        let mut out = Vec::new();
        emit_response(&mut out, b"xy", &id(1), Some(&nodes), Some(b"tok"), &[peer]);
        let msg = parse(&out).unwrap();
        assert_eq!(
            msg.body,
            Body::Response(Response {
                id: id(1),
                nodes: &nodes,
                token: Some(b"tok"),
                values: vec![peer],
            })
        );
        assert_eq!(
            compact_nodes(msg_nodes(&msg)).collect::<Vec<_>>(),
            [(id(4), peer)]
        );
        out.clear();
        emit_error(&mut out, b"xy", ERROR_PROTOCOL, b"bad token");
        assert_eq!(
            parse(&out).unwrap().body,
            Body::Error {
                code: 203,
                message: b"bad token"
            }
        );
    }

    fn msg_nodes<'a>(msg: &Message<'a>) -> &'a [u8] {
        match &msg.body {
            Body::Response(r) => r.nodes,
            _ => &[],
        }
    }

    #[test]
    fn compact_nodes_skip_port_zero_and_truncation() {
        let mut nodes = Vec::new();
        push_compact_node(
            &mut nodes,
            &id(1),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
        );
        push_compact_node(
            &mut nodes,
            &id(2),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9),
        );
        nodes.extend_from_slice(&[7; 25]);
        let got: Vec<_> = compact_nodes(&nodes).collect();
        assert_eq!(got, [(id(2), SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9))]);
    }

    #[test]
    fn typed_errors() {
        let q = |body: &str| format!("d1:a{body}1:q4:ping1:t2:aa1:y1:qe").into_bytes();
        let with_id = |extra: &str| {
            format!("d1:ad2:id20:aaaaaaaaaaaaaaaaaaaa{extra}e1:q9:find_node1:t2:aa1:y1:qe")
                .into_bytes()
        };
        let cases: Vec<(Vec<u8>, KrpcError, bool)> = vec![
            (b"i1e".to_vec(), KrpcError::NotADict, false),
            (b"d1:y1:qe".to_vec(), KrpcError::Missing("t"), false),
            (b"d1:t0:1:y1:qe".to_vec(), KrpcError::BadTransaction, false),
            (b"d1:ti1e1:y1:qe".to_vec(), KrpcError::WrongType("t"), false),
            (b"d1:t1:a1:y1:xe".to_vec(), KrpcError::UnknownType, false),
            (q("i1e"), KrpcError::WrongType("a"), true),
            (q("d2:id3:abce"), KrpcError::BadId("id"), true),
            (with_id(""), KrpcError::Missing("target"), true),
            (with_id("6:targeti5e"), KrpcError::WrongType("target"), true),
            (
                b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q17:sample_infohashes1:t1:z1:y1:qe".to_vec(),
                KrpcError::UnknownMethod,
                true,
            ),
            (
                b"d1:rd2:id1:xe1:t1:a1:y1:re".to_vec(),
                KrpcError::BadId("id"),
                false,
            ),
            (
                b"d1:rd2:id20:aaaaaaaaaaaaaaaaaaaa6:values3:abce1:t1:a1:y1:re".to_vec(),
                KrpcError::WrongType("values"),
                false,
            ),
            (
                b"d1:e3:abc1:t1:a1:y1:ee".to_vec(),
                KrpcError::WrongType("e"),
                false,
            ),
        ];
        for (wire, error, is_query) in cases {
            let err = parse(&wire).unwrap_err();
            assert_eq!(err.error, error, "{}", String::from_utf8_lossy(&wire));
            assert_eq!(err.query_t.is_some(), is_query);
        }
    }

    #[test]
    fn unknown_keys_ignored() {
        let wire = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaa3:zzzi1ee1:q4:ping1:t1:z1:vi3e1:y1:qe";
        assert!(matches!(
            parse(wire).unwrap().body,
            Body::Query {
                query: Query::Ping,
                ..
            }
        ));
    }

    quickcheck! {
        fn parse_never_panics(data: Vec<u8>) -> bool {
            let _ = parse(&data);
            true
        }

        fn response_fields_round_trip(t: Vec<u8>, token: Option<Vec<u8>>, peers: Vec<(u32, u16)>) -> bool {
            let t = if t.is_empty() || t.len() > MAX_T_LEN { b"t".to_vec() } else { t };
            let values: Vec<SocketAddrV4> =
                peers.iter().map(|&(ip, port)| SocketAddrV4::new(ip.into(), port)).collect();
            let mut out = Vec::new();
            emit_response(&mut out, &t, &id(3), None, token.as_deref(), &values);
            let msg = parse(&out).unwrap();
            msg.t == &t[..]
                && msg.body == Body::Response(Response {
                    id: id(3),
                    nodes: &[],
                    token: token.as_deref(),
                    values,
                })
        }
    }
}
