// Test gateway: a real Wechaty puppet service (gRPC, no TLS, 127.0.0.1) over wechaty-puppet-mock,
// with a small HTTP control API on loopback so that the tests script the fake WeChat world.
//
//   PORT=18788 CONTROL_PORT=18790 TOKEN=insecure_test node server.mjs
//
// Control API (JSON):
//   POST /say        {from, to?, room?, text?, image?, mentions?, ageSeconds?} -> {id}
//   POST /redeliver  {id}            the same message event again (a duplicate id)
//   GET  /sent                        every message the bot sent, in order
//   GET  /health                      {loggedIn, clients}
//   POST /logout
import http from 'node:http'
import { PuppetServer, log } from 'wechaty-puppet-service'
import { PuppetMock, mock } from 'wechaty-puppet-mock'
import * as PUPPET from 'wechaty-puppet'

log.level(process.env.WECHATY_LOG || 'warn')

const PORT = process.env.PORT || '18788'
const CONTROL_PORT = Number(process.env.CONTROL_PORT || '18790')
const TOKEN = process.env.TOKEN || 'insecure_test'

// The stock mock returns no message id from messageSendText and drops mentions; python-wechaty
// then fails after sending. Fix both, as the reference harness does.
class TestPuppetMock extends PuppetMock {
  async messageSendText (conversationId, text, mentionIdList = []) {
    const user = this.mocker.ContactMock.load(this.currentUserId)
    const conversation = /@/.test(conversationId)
      ? this.mocker.RoomMock.load(conversationId)
      : this.mocker.ContactMock.load(conversationId)
    const mentions = (mentionIdList || []).map(id => this.mocker.ContactMock.load(id))
    user.say(text, mentions).to(conversation)
    return [...this.mocker.cacheMessagePayload.keys()].pop()
  }
}

const mocker = new mock.Mocker()
const puppet = new TestPuppetMock({ mocker })

const people = {
  bot: mocker.createContact({ id: 'bot_self_id', name: 'TestBot' }),
  alice: mocker.createContact({ id: 'alice_id', name: 'Alice' }),
  bob: mocker.createContact({ id: 'bob_id', name: 'Bob' }),
  carol: mocker.createContact({ id: 'carol_id', name: 'Carol' }),
  admin: mocker.createContact({ id: 'admin_id', name: 'Supervisor' }),
}
// more people for load and soak runs: u1 .. uN (ids u1_id .. uN_id)
for (let i = 1; i <= Number(process.env.EXTRA_CONTACTS || '0'); i++) {
  people[`u${i}`] = mocker.createContact({ id: `u${i}_id`, name: `User ${i}` })
}
const rooms = {
  'room1@chatroom': mocker.createRoom({
    id: 'room1@chatroom', topic: 'Support Room', memberIdList: Object.values(people).map(p => p.id),
  }),
  'room2@chatroom': mocker.createRoom({
    id: 'room2@chatroom', topic: 'Other Room', memberIdList: [people.bot.id, people.alice.id, people.bob.id],
  }),
}
mocker.use(m => { m.login(people.bot); return () => {} })

const sent = []
people.bot.on('message', msg => {
  if (msg.payload.talkerId !== people.bot.id) return
  sent.push({
    id: msg.payload.id,
    text: msg.payload.text,
    roomId: msg.payload.roomId || null,
    listenerId: msg.payload.listenerId || null,
    mentionIdList: msg.payload.mentionIdList || [],
    timestamp: msg.payload.timestamp,
  })
})

const contactById = id => people[id] || Object.values(people).find(p => p.id === id)

let seq = 0
function say ({ from, to, room, text, image, mentions = [], ageSeconds = 0 }) {
  const talker = contactById(from)
  if (!talker) throw new Error('unknown contact ' + from)
  const payload = {
    id: `test-msg-${Date.now()}-${++seq}`,
    talkerId: talker.id,
    timestamp: Date.now() - ageSeconds * 1000,
    type: image ? PUPPET.types.Message.Image : PUPPET.types.Message.Text,
  }
  if (!image) payload.text = text
  if (room) {
    if (!rooms[room]) throw new Error('unknown room ' + room)
    payload.roomId = room
    payload.mentionIdList = mentions.map(m => contactById(m).id)
  } else {
    payload.listenerId = contactById(to || 'bot').id
  }
  const msg = mocker.MessageMock.create(payload)
  puppet.emit('message', { messageId: msg.id })
  return msg.id
}

const server = new PuppetServer({ endpoint: `127.0.0.1:${PORT}`, puppet, token: TOKEN, tls: { disable: true } })
const baseListeners = puppet.listenerCount('message')

const readBody = req => new Promise((resolve, reject) => {
  let body = ''
  req.on('data', chunk => { body += chunk })
  req.on('end', () => { try { resolve(body ? JSON.parse(body) : {}) } catch (e) { reject(e) } })
})

const control = http.createServer(async (req, res) => {
  const reply = (code, value) => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(value)) }
  try {
    if (req.method === 'GET' && req.url === '/sent') return reply(200, sent)
    if (req.method === 'GET' && req.url === '/health') {
      return reply(200, { loggedIn: puppet.isLoggedIn, clients: puppet.listenerCount('message') - baseListeners })
    }
    const body = await readBody(req)
    if (req.method === 'POST' && req.url === '/say') return reply(200, { id: say(body) })
    if (req.method === 'POST' && req.url === '/redeliver') {
      puppet.emit('message', { messageId: body.id })
      return reply(200, { id: body.id })
    }
    if (req.method === 'POST' && req.url === '/logout') { await puppet.logout(); return reply(200, {}) }
    reply(404, { error: 'no such route' })
  } catch (e) {
    reply(400, { error: String(e && e.message || e) })
  }
})

await server.start()
await new Promise(resolve => control.listen(CONTROL_PORT, '127.0.0.1', resolve))
console.log(`[gateway] puppet service on 127.0.0.1:${PORT}, control on 127.0.0.1:${CONTROL_PORT}`)

const shutdown = async () => {
  control.close()
  await server.stop().catch(() => {})
  await puppet.stop().catch(() => {})
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
