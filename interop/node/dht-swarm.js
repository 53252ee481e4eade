#!/usr/bin/env node
// Many bittorrent-dht 7.10 nodes (discovery-channel's own copy) in one process, for the
// interop suite's mixed DHT network. Node 0 listens first and is everybody's bootstrap; each
// node announces every topic (SHA-1 of the topic, as discovery-channel hashes it) with its own
// fake peer port, then looks every topic up again and again, printing what it has found.
//   node dht-swarm.js --count 20 --base-port 7400 --announce-base 7500 --topics a,b,c
//                     [--bootstrap HOST:PORT] [--every MS] [--announcers N]
// (--announce-at MS: announce MS after the process started instead of 0.5 s after listening;
// --every 0: no repeated lookups; --announcers N: only nodes 0..N-1 announce; --spread-ips:
// node i listens on 127.1.<i/250>.<i%250+1> instead of 127.0.0.1, one address per node as on
// the real network, so per-address limits apply as they would there.)
// Lines (JSON): {event:"listening"}, {event:"announced",node,topic},
// {event:"found",node,topic,ports:[...]} whenever a node's set for a topic grows.
'use strict'
const path = require('path')
const crypto = require('crypto')
const channelDir = path.dirname(require.resolve('discovery-channel'))
const DHT = require(require.resolve('bittorrent-dht', { paths: [channelDir] }))

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name)
  return i < 0 ? fallback : process.argv[i + 1]
}
const count = Number(arg('--count', '20'))
const basePort = Number(arg('--base-port', '7400'))
const announceBase = Number(arg('--announce-base', '7500'))
const topics = arg('--topics', 'topic').split(',')
const every = Number(arg('--every', '2000'))
const bootstrap = arg('--bootstrap', `${process.argv.includes('--spread-ips') ? '127.1.0.1' : '127.0.0.1'}:${basePort}`)
const announcers = Number(arg('--announcers', String(count)))
const announceAt = arg('--announce-at', null)
const started = Date.now()
const spread = process.argv.includes('--spread-ips')
const hostOf = (i) => spread ? `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}` : '127.0.0.1'
const log = (event, fields) => process.stdout.write(JSON.stringify(Object.assign({ event }, fields)) + '\n')
const hashes = topics.map((t) => crypto.createHash('sha1').update(t).digest())

const nodes = []
function start (i) {
  const dht = new DHT({ bootstrap: i === 0 ? false : [bootstrap] })
  const found = topics.map(() => new Set())
  dht.on('peer', (peer, infoHash) => {
    const t = hashes.findIndex((h) => h.equals(infoHash))
    if (t < 0 || found[t].has(peer.port)) return
    found[t].add(peer.port)
    log('found', { node: i, topic: topics[t], ports: [...found[t]].sort((a, b) => a - b) })
  })
  dht.on('error', (err) => log('error', { node: i, error: String(err) }))
  dht.on('warning', () => {})
  const round = () => hashes.forEach((h, t) => {
    dht.announce(h, announceBase + i, (err) => {
      if (!err) log('announced', { node: i, topic: topics[t] })
    })
  })
  const lookups = () => hashes.forEach((h) => dht.lookup(h))
  dht.listen(basePort + i, hostOf(i), () => {
    if (i === 0) log('listening', { port: basePort })
    if (i >= announcers) return
    setTimeout(() => {
      round()
      if (every > 0) { setInterval(lookups, every); setInterval(round, every * 5) }
    }, announceAt === null ? 500 : Math.max(0, Number(announceAt) - (Date.now() - started)))
  })
  nodes.push(dht)
}
for (let i = 0; i < count; i++) setTimeout(() => start(i), i * 20)
process.on('SIGTERM', () => process.exit(0))
