// One utp-native (libutp) connection's bulk throughput between two Node processes on loopback.
//   node bench/utp-node.js recv PORT          prints {"bytes":..,"seconds":..,"mib_per_s":..} at end of stream
//   node bench/utp-node.js send PORT MIB      writes MIB MiB, then ends
'use strict'
const utp = require('utp-native')
const [role, port, mib] = process.argv.slice(2)
if (role === 'recv') {
  const server = utp.createServer((sock) => {
    let bytes = 0
    let start = 0
    sock.on('data', (d) => { if (!start) start = process.hrtime.bigint(); bytes += d.length })
    sock.on('end', () => {
      const seconds = Number(process.hrtime.bigint() - start) / 1e9
      console.log(JSON.stringify({ transport: 'libutp', bytes, seconds, mib_per_s: bytes / 1048576 / seconds }))
      sock.end()
      server.close()
      process.exit(0)
    })
  })
  server.listen(Number(port), () => console.error('listening ' + port))
} else {
  const sock = utp.connect(Number(port), '127.0.0.1')
  const chunk = Buffer.alloc(64 * 1024, 0x5a)
  let left = Number(mib) * 16
  function more () {
    while (left > 0) {
      left--
      if (left === 0) { sock.end(chunk); return }
      if (!sock.write(chunk)) return sock.once('drain', more)
    }
  }
  sock.on('connect', more)
  sock.on('error', (e) => { console.error(String(e)); process.exit(1) })
  sock.on('end', () => process.exit(0))
  sock.on('close', () => process.exit(0))
}
