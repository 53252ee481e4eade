#!/usr/bin/env node
// Node dns-discovery 6.2.3 as a server for bench/dns: multicast off, the store limit raised so
// the benchmark's peers all fit (as ours), garbage collected on SIGUSR2 (run with --expose-gc)
// so resident memory is measured after collection.
//   node --expose-gc bench/dns-node-server.js PORT
'use strict'
const port = Number(process.argv[2])
const discovery = require('dns-discovery')
const server = discovery({ multicast: false, limit: 10000000 })
server.on('error', (err) => process.stderr.write(String(err) + '\n'))
process.on('SIGUSR2', () => { if (global.gc) global.gc() })
process.on('SIGTERM', () => process.exit(0))
server.listen(port, () => process.stdout.write(JSON.stringify({ event: 'listening', port }) + '\n'))
