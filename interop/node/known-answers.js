// Node reads our known-answer list and ignores it (README, "known answers"): the bytes of a
// listing query exactly as our encoder writes them (swarm-core's `listing_query_golden_bytes`)
// go through multicast-dns's decoder and dns-discovery's query handler. Prints one JSON line;
// exits 1 if Node drops the query, takes a peer from the list, or does not answer it.
const packet = require('multicast-dns/node_modules/dns-packet')
const DNS = require('dns-discovery')

const hex = '00000000000100010000000028333062343131663565663233316533346163633137653030363561386665643264373231313666640d646e732d646973636f76657279056c6f63616c000010000128333062343131663565663233316533346163633137653030363561386665643264373231313666640d646e732d646973636f76657279056c6f63616c00000a000100000000000c0a0000031b5b0a0000021b5a'
const id = '30b411f5ef231e34acc17e0065a8fed2d72116fd' // sha1('ubuntu-14.04')

const result = { decoded: false, peers: [], answers: [] }
const query = packet.decode(Buffer.from(hex, 'hex'))
result.decoded = query.questions.length === 1 && query.answers.length === 1 &&
  query.answers[0].type === 'NULL' && query.answers[0].data.toString('hex') === '0a0000031b5b0a0000021b5a'

const d = DNS({ multicast: false })
d.on('peer', (name, peer) => result.peers.push(peer))
d.announce(id, 7001, { server: false, multicast: false })
// What dns-discovery's `_onmulticastquery` does with a query from 10.0.0.1:5353, without the
// socket: answer the questions, read the answer section as announcements.
const reply = []
for (const q of query.questions) d._onquestion(q, 5353, '10.0.0.1', reply, true)
for (const a of query.answers) d._onanswer(a, 5353, '10.0.0.1', null)
result.answers = reply.map(a => a.type)
d.destroy()

console.log(JSON.stringify(result))
const ok = result.decoded && result.peers.length === 0 && result.answers.join() === 'TXT'
process.exit(ok ? 0 : 1)
