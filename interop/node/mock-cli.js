#!/usr/bin/env node
// Stand-in for the Rust CLI, built on discovery-swarm@6.1.0 itself, used only to validate run.py
// before the Rust binary exists:  SWARM_BIN="node interop/node/mock-cli.js" interop/run
// Supports: join TOPIC... [--port N] [--id HEX] [--peer HOST:PORT]... [--keep-existing] --json --pipe
// (events as JSON lines on stderr, stdin copied to every connection, received data to stdout).
// Expected result: the Node-vs-Node scenarios pass and hostile-input fails (Node's reader is unsafe).
'use strict'
const crypto = require('crypto')
const swarmFactory = require('discovery-swarm')

const a = process.argv.slice(2)
if (a.shift() !== 'join') throw new Error('usage: mock-cli.js join TOPIC... [options]')
const topics = []
const peers = []
let port = 0
let id = crypto.randomBytes(32)
let keepExistingConnections = false
while (a.length) {
  const k = a.shift()
  if (k === '--port') port = Number(a.shift())
  else if (k === '--id') id = Buffer.from(a.shift(), 'hex')
  else if (k === '--peer') peers.push(a.shift())
  else if (k === '--keep-existing') keepExistingConnections = true
  else if (k === '--json' || k === '--pipe') continue
  else if (k.startsWith('--')) throw new Error(`mock-cli.js: unsupported option ${k}`)
  else topics.push(k)
}

const emit = (event, f) => process.stderr.write(JSON.stringify(Object.assign({ event }, f)) + '\n')
const sw = swarmFactory({ utp: false, dns: false, dht: false, id, keepExistingConnections })
let next = 0
const num = (c) => c._mockConn || (c._mockConn = ++next)
const host = (h) => h.replace(/^::ffff:/, '')
function connFields (c, info) {
  if (!c._mockPort) c._mockPort = c.localPort
  return {
    conn: num(c), type: info.type, initiator: info.initiator, host: host(info.host), port: info.port,
    local_port: c._mockPort, id: info.id ? info.id.toString('hex') : null,
    topic: info.channel ? info.channel.toString('hex') : null
  }
}
const peerFields = (p) => ({ host: p.host, port: p.port, topic: p.channel ? p.channel.toString('hex') : null })

for (const ev of ['handshaking', 'handshake-timeout', 'connection', 'redundant-connection', 'connection-closed']) {
  sw.on(ev, (c, info) => emit(ev, connFields(c, info)))
}
for (const ev of ['peer', 'drop', 'connecting']) sw.on(ev, (p) => emit(ev, peerFields(p)))
sw.on('connect-failed', (p, d) => emit('connect-failed', Object.assign(peerFields(p), { timedout: d.timedout })))

const live = new Set()
sw.on('connection', (c) => {
  live.add(c)
  c.on('close', () => live.delete(c))
  c.on('data', (d) => process.stdout.write(d))
})
process.stdin.on('data', (d) => { for (const c of live) c.write(d) })

sw.listen(port, () => {
  emit('listening', { port: sw.address().port })
  for (const t of topics) sw.join(t)
  for (const hp of peers) {
    const i = hp.lastIndexOf(':')
    sw.addPeer(topics[0], { host: hp.slice(0, i), port: Number(hp.slice(i + 1)) })
  }
})
