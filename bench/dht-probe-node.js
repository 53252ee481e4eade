#!/usr/bin/env node
// Node's side of bench/dht-lookup: one fresh bittorrent-dht 7.10 node (discovery-channel's
// tree) joins the running DHT and looks topics up one at a time, counting the queries each
// lookup sends, the replies it gets, its wall time and the distinct announcers found, like
// swarm-bench's dht-probe. Prints one JSON object.
//   node dht-probe-node.js --bootstrap 127.0.0.1:7400 --topics a,b,c --expect 5
'use strict'
const path = require('path')
const crypto = require('crypto')
module.paths.unshift(path.join(__dirname, '../interop/node/node_modules'))
const channelDir = path.dirname(require.resolve('discovery-channel'))
const DHT = require(require.resolve('bittorrent-dht', { paths: [channelDir] }))

const arg = (name) => process.argv[process.argv.indexOf(name) + 1]
const topics = arg('--topics').split(',')
const expect = Number(arg('--expect'))
const dht = new DHT({ bootstrap: [arg('--bootstrap')] })
let sent = 0
let received = 0
dht.listen(0, '127.0.0.1', () => {
  const sock = dht._rpc.socket.socket
  const send = sock.send.bind(sock)
  sock.send = function () { sent++; return send.apply(null, arguments) }
  sock.on('message', () => { received++ })
})
dht.on('ready', async () => {
  const bootstrapQueries = sent
  const lookups = []
  for (const topic of topics) {
    const infoHash = crypto.createHash('sha1').update(topic).digest()
    const found = new Set()
    const onpeer = (peer, hash) => { if (hash.equals(infoHash)) found.add(`${peer.host}:${peer.port}`) }
    dht.on('peer', onpeer)
    const before = [sent, received]
    const started = process.hrtime.bigint()
    // A lookup that never calls back (seen on big networks) counts as what it found by then.
    let timedOut = false
    await new Promise((resolve) => {
      const timer = setTimeout(() => { timedOut = true; resolve() }, 30000)
      dht.lookup(infoHash, () => { clearTimeout(timer); resolve() })
    })
    if (timedOut) process.stderr.write(`lookup of ${topic} did not finish in 30 s\n`)
    const ms = Number(process.hrtime.bigint() - started) / 1e6
    dht.removeListener('peer', onpeer)
    lookups.push({ topic, queries: sent - before[0], replies: received - before[1], found: found.size, ms: Math.round(ms * 10) / 10, timed_out: timedOut })
  }
  const mean = (k) => lookups.reduce((a, l) => a + l[k], 0) / lookups.length
  console.log(JSON.stringify({
    bootstrap_queries: bootstrapQueries,
    contacts: dht.nodes.count(),
    queries_per_lookup: mean('queries'),
    replies_per_lookup: mean('replies'),
    ms_per_lookup: mean('ms'),
    complete: lookups.filter((l) => l.found >= expect).length,
    lookups
  }))
  process.exit(0)
})
