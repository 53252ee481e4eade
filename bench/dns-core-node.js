#!/usr/bin/env node
// Node dns-discovery 6.2.3's request path without sockets, for bench/dns: dns-packet decode,
// DNSDiscovery._onquery (questions answered, TXT records applied) and dns-socket's response
// encoding, on one core. The same requests as swarm-bench dns-core. Prints one JSON object.
//   node bench/dns-core-node.js PEERS PER_NAME SECONDS
'use strict'
const crypto = require('crypto')
const path = require('path')
const discovery = require('dns-discovery')
const packet = require(require.resolve('dns-packet', { paths: [path.dirname(require.resolve('dns-socket'))] }))

const [peers, perName, seconds] = process.argv.slice(2).map(Number)
const names = Math.ceil(peers / perName)
const d = discovery({ multicast: false, limit: 10000000 })
d._listening = true // server mode, without binding sockets
const host = '127.0.0.1'
const token = crypto.createHash('sha256').update(d._secrets[1]).update(host).digest('base64')
let sent = 0
const socket = {
  response (query, response) {
    response.type = 'response'
    response.id = query.id
    sent += packet.encode(response).length
  },
  query () { return 0 },
  setRetries () {}
}
const name = (i) => i.toString(16).padStart(40, '0') + '.dns-discovery.local'
const portOf = (i) => 1000 + Math.floor(i / names)
function request (i, subscribe) {
  const n = name(i % names)
  const data = [Buffer.from('token=' + token), Buffer.from('announce=' + portOf(i))]
  if (subscribe) data.unshift(Buffer.from('subscribe=true'))
  return packet.encode({
    type: 'query', id: 0x1234, flags: 0x0100,
    questions: [{ type: 'TXT', name: n }],
    additionals: [{ type: 'TXT', name: n, ttl: 0, data }]
  })
}
for (let i = 0; i < peers; i++) d._onquery(packet.decode(request(i, false)), 4000, host, socket)
const set = []
for (let k = 0; k < 4096; k++) set.push(request((k * 7919) % peers, true))
let done = 0
const start = process.hrtime.bigint()
const end = start + BigInt(seconds) * 1000000000n
while (process.hrtime.bigint() < end) {
  for (let k = 0; k < 256; k++) d._onquery(packet.decode(set[(done + k) % set.length]), 4000, host, socket)
  done += 256
}
const secs = Number(process.hrtime.bigint() - start) / 1e9
process.stdout.write(JSON.stringify({ requests_per_sec: Math.round(done / secs), mean_reply_bytes: Math.round(sent / (done + peers)) }) + '\n')
