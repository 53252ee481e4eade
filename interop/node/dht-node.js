#!/usr/bin/env node
// A local bootstrap node for the interop suite: bittorrent-dht 7.10 from discovery-channel's
// own tree (the version discovery-swarm 6.1.0 really uses), never bootstrapping itself.
// Logs `listening` and every `announce` it stores as JSON lines.
//   node dht-node.js --port N
'use strict'
const path = require('path')
const port = Number(process.argv[process.argv.indexOf('--port') + 1])
const channelDir = path.dirname(require.resolve('discovery-channel'))
const DHT = require(require.resolve('bittorrent-dht', { paths: [channelDir] }))
const version = require(path.join(path.dirname(require.resolve('bittorrent-dht', { paths: [channelDir] })), 'package.json')).version
const log = (event, fields) => process.stdout.write(JSON.stringify(Object.assign({ event }, fields)) + '\n')
const dht = new DHT({ bootstrap: false })
dht.on('announce', (peer, infoHash) => log('announce', { host: peer.host, port: peer.port, infoHash: infoHash.toString('hex') }))
dht.on('error', (err) => log('error', { error: String(err) }))
dht.listen(port, '127.0.0.1', () => log('listening', { port, version }))
process.on('SIGTERM', () => process.exit(0))
