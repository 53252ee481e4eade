#!/usr/bin/env node
// A Node dns-discovery 6.2.3 server for the interop suite (what `dns-discovery listen` runs),
// multicast off. Logs `listening` and every peer announced to it as JSON lines.
//   node dns-server.js --port N
'use strict'
const port = Number(process.argv[process.argv.indexOf('--port') + 1])
const discovery = require('dns-discovery')
const version = require('dns-discovery/package.json').version
const log = (event, fields) => process.stdout.write(JSON.stringify(Object.assign({ event }, fields)) + '\n')
const server = discovery({ multicast: false })
server.on('peer', (name, peer) => log('announce', { name, host: peer.host, port: peer.port }))
server.on('error', (err) => log('error', { error: String(err) }))
server.listen(port, () => log('listening', { port, version }))
process.on('SIGTERM', () => process.exit(0))
