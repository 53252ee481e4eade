#!/usr/bin/env node
// The Node reference's DHT core under the same load as swarm-bench's dht-core: bittorrent-dht
// 7.10 (discovery-channel's tree), datagrams fed into its socket's 'message' event and replies
// counted instead of sent, so decode, handler and encode are measured without the kernel.
// Prints one JSON object. Run with --expose-gc (bench/dht-core does).
'use strict'
const path = require('path')
module.paths.unshift(path.join(__dirname, '../interop/node/node_modules'))
const channelDir = path.dirname(require.resolve('discovery-channel'))
const DHT = require(require.resolve('bittorrent-dht', { paths: [channelDir] }))
const bencode = require(require.resolve('bencode', { paths: [path.dirname(require.resolve('k-rpc-socket', { paths: [channelDir] }))] }))
const crypto = require('crypto')

const dht = new DHT({ bootstrap: false })
const sock = dht._rpc.socket.socket
let answered = 0
let bytes = 0
let lastReply = null
sock.send = (buf, off, len, port, host, cb) => { answered++; bytes += len; lastReply = buf; if (cb) cb() }
const source = (i) => ({ address: `10.0.${Math.floor((i % 4000) / 250)}.${(i % 250) + 1}`, port: 6881, family: 'IPv4', size: 0 })
const query = (t, q, a) => bencode.encode({ t: Buffer.from([t >> 8 & 255, t & 255]), y: 'q', q, a })
const feed = (buf, from) => sock.emit('message', buf, from)

for (let i = 0; i < 4000; i++) feed(query(1, 'ping', { id: crypto.randomBytes(20) }), source(i))
const hashes = Array.from({ length: 1000 }, () => crypto.randomBytes(20))
hashes.forEach((infoHash, h) => {
  for (let k = 0; k < 5; k++) {
    const from = source(h * 5 + k)
    const id = crypto.randomBytes(20)
    feed(query(2, 'get_peers', { id, info_hash: infoHash }), from)
    const token = bencode.decode(lastReply).r.token
    feed(query(3, 'announce_peer', { id, info_hash: infoHash, port: 7000 + k, token, implied_port: 0 }), from)
  }
})

const queries = Array.from({ length: 20000 }, (_, i) => i % 2 === 0
  ? query(i & 0xffff, 'find_node', { id: crypto.randomBytes(20), target: crypto.randomBytes(20) })
  : query(i & 0xffff, 'get_peers', { id: crypto.randomBytes(20), info_hash: hashes[(i >> 1) % hashes.length] }))
const rounds = 50
answered = 0
bytes = 0
const start = process.hrtime.bigint()
for (let r = 0; r < rounds; r++) queries.forEach((q, i) => feed(q, source(i + r)))
const seconds = Number(process.hrtime.bigint() - start) / 1e9
const sent = queries.length * rounds

// Memory per stored peer: 200,000 peers over 10,000 info-hashes through the DHT's own store.
const storeHashes = Array.from({ length: 10000 }, () => crypto.randomBytes(20))
global.gc && global.gc()
const before = process.memoryUsage().rss
for (let i = 0; i < 200000; i++) {
  const host = `${(i >> 24) & 255}.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
  dht._addPeer({ host, port: (i % 60000) + 1 }, storeHashes[i % 10000], { host, port: 1 })
}
global.gc && global.gc()
const after = process.memoryUsage().rss

// Memory per routing-table contact: 100 full tables of k-rpc's own k-bucket (k = 20), every
// bucket filled by ids sharing exactly its prefix with the table's id, contacts shaped as
// k-rpc stores them ({id, host, port}).
const KBucket = require(require.resolve('k-bucket', { paths: [path.dirname(require.resolve('k-rpc', { paths: [channelDir] }))] }))
const idIn = (own, bucket) => {
  const id = crypto.randomBytes(20)
  for (let bit = 0; bit <= bucket; bit++) {
    const byte = bit >> 3
    const mask = 0x80 >> (bit & 7)
    const want = bit < bucket ? (own[byte] & mask) : (~own[byte] & mask)
    id[byte] = (id[byte] & ~mask) | want
  }
  return id
}
global.gc && global.gc()
const tablesBefore = process.memoryUsage().heapUsed
const tables = []
let contacts = 0
for (let t = 0; t < 100; t++) {
  const own = crypto.randomBytes(20)
  const table = new KBucket({ localNodeId: own, numberOfNodesPerKBucket: 20, numberOfNodesToPing: 16 })
  for (let b = 0; b < 160; b++) {
    for (let j = 0; j < 20; j++) {
      table.add({ id: idIn(own, b), host: `10.${t}.${b}.${j + 1}`, port: 6881 })
    }
  }
  contacts += table.count()
  tables.push(table)
}
global.gc && global.gc()
const tablesAfter = process.memoryUsage().heapUsed
console.log(JSON.stringify({
  queries: sent,
  answered,
  seconds: Number(seconds.toFixed(3)),
  queries_per_sec: Math.round(sent / seconds),
  mean_reply_bytes: Math.round(bytes / Math.max(answered, 1)),
  contacts: dht.nodes.count(),
  stored_peers: 200000,
  bytes_per_stored_peer: Number(((after - before) / 200000).toFixed(1)),
  table_contacts: contacts,
  bytes_per_contact: Number(((tablesAfter - tablesBefore) / contacts).toFixed(1)),
  tables: tables.length
}))
process.exit(0)
