#!/usr/bin/env node
// Node reference peer for the interop suite: discovery-swarm@6.1.0, TCP only, no discovery
// unless --dht-bootstrap names a (local) DHT bootstrap node.
// Logs every swarm event as one JSON object per line on stdout (consumed by interop/run.py).
//   node peer.js --port N [--id HEX] [--topic T] [--add-peer HOST:PORT]... [--seconds S] [--send LINE]
//                [--dial-on-signal]  (make the addPeer calls on SIGUSR2 instead of after listening)
//                [--dht-bootstrap HOST:PORT]  (DHT on, with that bootstrap node only)
//                [--mdns]  (multicast DNS on: dns-discovery with no servers)
//                [--dns-server HOST:PORT]...  (unicast dns-discovery servers; multicast off unless --mdns)
//                [--utp] [--no-tcp]  (uTP on through utp-native; TCP off)
//                [--bulk-mib N]  (on connection: send N MiB of random bytes, end once the peer
//                                 ended; log the SHA-256 of what was sent and of everything received)
'use strict'
const crypto = require('crypto')
const swarmFactory = require('discovery-swarm')

const args = { addPeer: [], dnsServers: [] }
for (let i = 2; i < process.argv.length; i++) {
  const k = process.argv[i]
  if (k === '--dial-on-signal') { args.dialOnSignal = true; continue }
  if (k === '--mdns') { args.mdns = true; continue }
  if (k === '--utp') { args.utp = true; continue }
  if (k === '--no-tcp') { args.noTcp = true; continue }
  const v = process.argv[++i]
  if (v === undefined) usage(`missing value for ${k}`)
  if (k === '--port') args.port = Number(v)
  else if (k === '--id') args.id = v
  else if (k === '--topic') args.topic = v
  else if (k === '--add-peer') args.addPeer.push(v)
  else if (k === '--seconds') args.seconds = Number(v)
  else if (k === '--send') args.send = v
  else if (k === '--dht-bootstrap') args.dhtBootstrap = v
  else if (k === '--dns-server') args.dnsServers.push(v)
  else if (k === '--bulk-mib') args.bulkMib = Number(v)
  else usage(`unknown argument ${k}`)
}
function usage (msg) {
  process.stderr.write(`peer.js: ${msg}\n`)
  process.exit(2)
}

const start = Date.now()
const id = args.id ? Buffer.from(args.id, 'hex') : crypto.randomBytes(32)
const idHex = id.toString('hex')
const send = args.send !== undefined ? args.send : `hello from node ${idHex}\n`

function log (event, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ t: Date.now() - start, event }, fields)) + '\n')
}

process.on('uncaughtException', (err) => {
  log('uncaught', { error: String(err && err.stack || err), code: err && err.code })
  process.exit(1)
})

// Never a DHT with default options: the public bootstrap routers must not be contacted.
const dht = args.dhtBootstrap ? { bootstrap: [args.dhtBootstrap] } : false
let dns = args.mdns ? {} : false
if (args.dnsServers.length) dns = { servers: args.dnsServers, multicast: !!args.mdns }
const sw = swarmFactory({ utp: !!args.utp, tcp: !args.noTcp, dns, dht, id })

// Ports are recorded at 'handshaking' because a destroyed socket may no longer know them.
function ports (conn) {
  if (!conn._interopPorts) conn._interopPorts = { localPort: conn.localPort, remotePort: conn.remotePort }
  return conn._interopPorts
}
function connFields (conn, info) {
  return Object.assign({
    type: info.type,
    initiator: info.initiator,
    host: info.host,
    port: info.port,
    id: info.id ? info.id.toString('hex') : null
  }, ports(conn))
}
function peerFields (peer) {
  return { host: peer.host, port: peer.port, topic: peer.channel ? peer.channel.toString('hex') : null }
}

// Note: for 'redundant-connection' discovery-swarm passes the socket being destroyed but the info of
// the *newer* connection, so localPort/remotePort may not match host/port on that event.
for (const ev of ['handshaking', 'handshake-timeout', 'connection', 'redundant-connection', 'connection-closed']) {
  sw.on(ev, (conn, info) => log(ev, connFields(conn, info)))
}
for (const ev of ['peer', 'drop', 'connecting']) sw.on(ev, (peer) => log(ev, peerFields(peer)))
sw.on('connect-failed', (peer, d) => log('connect-failed', Object.assign(peerFields(peer), { timedout: d.timedout })))
sw.on('peer-rejected', (peer, d) => log('peer-rejected', Object.assign(peerFields(peer), { reason: d.reason })))
sw.on('peer-banned', (peer, d) => {
  // removePeer: (peer, {reason}); self detection: ({peer, reason})
  if (!d) log('peer-banned', Object.assign(peerFields(peer.peer), { reason: peer.reason }))
  else log('peer-banned', Object.assign(peerFields(peer), { reason: d.reason }))
})
sw.on('listening', () => log('listening', { port: sw.address().port, id: idHex }))
sw.on('close', () => log('close', {}))
sw.on('error', (err) => log('error', { error: String(err) }))

sw.on('connection', (conn, info) => {
  const p = ports(conn)
  conn.on('error', (err) => log('conn-error', { type: info.type, error: String(err), code: err && err.code }))
  if (args.bulkMib) return bulk(conn, info)
  conn.on('data', (data) => log('data', { localPort: p.localPort, remotePort: p.remotePort, data: data.toString('utf8') }))
  conn.write(send)
})

// Sends args.bulkMib MiB then ends; hashes both directions.
function bulk (conn, info) {
  const got = crypto.createHash('sha256')
  let received = 0
  conn.on('data', (data) => { got.update(data); received += data.length })
  // Our end() waits for the peer's: both sides stream at once, and the peer's half-close must
  // leave our direction open (we keep sending after its FIN).
  let peerEnded = false
  let lastChunk = null
  conn.on('end', () => {
    log('received', { type: info.type, bytes: received, sha256: got.digest('hex') })
    peerEnded = true
    if (lastChunk) conn.end(lastChunk)
  })
  const sent = crypto.createHash('sha256')
  let left = args.bulkMib * 1024 * 1024
  function more () {
    while (left > 0) {
      const chunk = crypto.randomBytes(Math.min(left, 64 * 1024))
      sent.update(chunk)
      left -= chunk.length
      if (left === 0) {
        if (peerEnded) conn.end(chunk)
        else lastChunk = chunk
        log('sent', { type: info.type, bytes: args.bulkMib * 1024 * 1024, sha256: sent.digest('hex') })
        return
      }
      if (!conn.write(chunk)) return conn.once('drain', more)
    }
  }
  more()
}

sw.listen(args.port || 0, () => {
  if (args.topic !== undefined) sw.join(args.topic, {}, (err) => log('joined', { topic: args.topic, error: err ? String(err) : null }))
  if (!args.dialOnSignal) dial()
})
if (args.dialOnSignal) process.once('SIGUSR2', dial) // installed early: the runner signals right after 'listening'

function dial () {
  for (const hp of args.addPeer) {
    const i = hp.lastIndexOf(':')
    sw.addPeer(args.topic !== undefined ? args.topic : 'interop', { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) })
  }
}

function finish (code) {
  const conns = sw.connections.filter((c) => !c.destroyed).map((c) => ports(c))
  log('final', { connected: sw.connected, connecting: sw.connecting, queued: sw.queued, conns })
  process.exit(code)
}
if (args.seconds) setTimeout(() => finish(0), args.seconds * 1000)
process.on('SIGTERM', () => finish(0))
// A snapshot without exiting, for soak checks.
process.on('SIGUSR1', () => {
  const conns = sw.connections.filter((c) => !c.destroyed).map((c) => ports(c))
  log('state', { connected: sw.connected, conns })
})
process.on('SIGINT', () => finish(0))
