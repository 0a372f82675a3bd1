// A TCP proxy in front of Redis that can lose one claim's reply. Run in the store's namespace:
//
//   node store-proxy.mjs LISTEN_HOST LISTEN_PORT REDIS_HOST REDIS_PORT
//
// It forwards every connection both ways, byte for byte. Commands, one JSON line each on stdin:
//
//   {"cmd":"lose-claim-reply","clients":["10.88.0.2","10.88.0.3"]}
//     arms it: the next request from one of those client addresses that carries an ownership
//     claim (the claim script's event, `ownership:claimed`) is forwarded to Redis, which applies
//     it, and from then on nothing Redis sends on that connection reaches the client (the reply
//     is lost); the connection stays open until the client gives up on it and closes it. Then it
//     is disarmed: one reply is lost, to whichever of them claimed first.
//     (`"client":"10.88.0.2"` arms it for one address.)
//   {"cmd":"disarm"}
//
// It prints one JSON line on stdout for what it did: {"ready":true}, {"lost":"10.88.0.2"}.
import net from 'node:net'
import { createInterface } from 'node:readline'

const [listenHost, listenPort, redisHost, redisPort] = process.argv.slice(2)
let armed = []

const server = net.createServer((client) => {
  const upstream = net.connect(Number(redisPort), redisHost)
  let losing = false
  const from = client.remoteAddress?.replace(/^::ffff:/, '')
  client.on('data', (chunk) => {
    if (armed.includes(from) && chunk.includes('ownership:claimed')) {
      armed = []
      losing = true
      process.stdout.write(JSON.stringify({ lost: from }) + '\n')
    }
    upstream.write(chunk)
  })
  upstream.on('data', (chunk) => {
    if (!losing) client.write(chunk)
  })
  const close = () => {
    client.destroy()
    upstream.destroy()
  }
  client.on('close', close)
  upstream.on('close', close)
  client.on('error', close)
  upstream.on('error', close)
})
server.listen(Number(listenPort), listenHost, () =>
  process.stdout.write(JSON.stringify({ ready: true }) + '\n')
)

createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line)
  if (m.cmd === 'lose-claim-reply') armed = m.clients ?? [m.client]
  if (m.cmd === 'disarm') armed = []
})
process.stdin.on('end', () => process.exit(0))
