#!/usr/bin/env node
// Reference server for the handshake benchmark: a plain discovery-swarm@6.1.0 swarm with
// only TCP (no uTP, DNS or DHT). It accepts connections, performs the default handshake
// (PROTOCOLS.md 1.2) and, on each `connection`, just keeps the socket, draining it until the
// peer closes. Prints `listening <port>` on stdout when ready.
//
//   node bench/node-server.js [--port N]      (N = 0 or absent: any free port)
//
// discovery-swarm is resolved from interop/node/node_modules first, then NODE_PATH.
'use strict'
const path = require('path')

module.paths.unshift(path.join(__dirname, '../interop/node/node_modules'))

const EXPECTED = '6.1.0'
const pkgPath = require.resolve('discovery-swarm/package.json')
const version = require(pkgPath).version
if (version !== EXPECTED && process.env.SWARM_BENCH_ANY_VERSION !== '1') {
  console.error(`node-server: discovery-swarm ${version} at ${pkgPath}, expected ${EXPECTED}`)
  process.exit(1)
}
const swarmFactory = require('discovery-swarm')

let port = 0
const i = process.argv.indexOf('--port')
if (i !== -1) port = Number(process.argv[i + 1])
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('node-server: bad --port')
  process.exit(2)
}

const sw = swarmFactory({ utp: false, dns: false, dht: false })
sw.on('error', (err) => {
  console.error('node-server: swarm error:', err)
  process.exit(1)
})
sw.on('connection', (conn) => {
  // Keep the socket; drain whatever arrives. It closes (and the swarm forgets it) on EOF.
  conn.resume()
})
sw.listen(port, () => {
  process.stdout.write(`listening ${sw.address().port}\n`)
  console.error(`node-server: discovery-swarm ${version} from ${path.dirname(pkgPath)}, node ${process.version}`)
})
