'use strict';
// express + pg + ioredis service, auto-instrumented by tracing.js. Mirrors
// ../python_service.py route for route so both SDKs record the same traffic.
//
// Environment: CAPTURE_PG (connection string), CAPTURE_REDIS_PORT,
// CAPTURE_NUMBERS (numbers.json), CAPTURE_LISTEN_PORT (0 = any free port),
// CAPTURE_PORT_FILE (where to write the port we listen on).

const { processor } = require('./tracing');
const fs = require('node:fs');
const { trace, context, SpanKind, INVALID_SPAN_CONTEXT } = require('@opentelemetry/api');
const express = require('express');
const { Pool } = require('pg');
const Redis = require('ioredis');

const NUMBERS = Object.fromEntries(
  JSON.parse(fs.readFileSync(process.env.CAPTURE_NUMBERS, 'utf8')).people.map((p) => [p.key, p.number]),
);
const pool = new Pool({ connectionString: process.env.CAPTURE_PG, max: 2 });
const redis = new Redis({ host: '127.0.0.1', port: Number(process.env.CAPTURE_REDIS_PORT), lazyConnect: true });
const tracer = trace.getTracer('tracescrub.capture');
const app = express();

const sql = async (text, values) => (await pool.query(text, values)).rows;

// --- health checks and scrapes: the noise. Each pings both backends so the
// dropped span has children. Express routing is case-insensitive by default,
// so /isalive and /ISALIVE reach the /isAlive route (http.route stays /isAlive).
const HEALTH = ['/isAlive', '/isReady', '/prometheus', '/metrics', '/actuator/health',
  '/actuator/health/liveness', '/internal/health', '/internal/healthz', '/internal/status'];
for (const path of HEALTH) {
  app.get(path, async (req, res) => {
    await sql('SELECT 1');
    await redis.ping();
    if (['/metrics', '/prometheus'].includes(req.path.toLowerCase())) {
      res.type('text/plain').send('# TYPE up gauge\nup 1\n');
    } else {
      res.json({ status: 'UP' });
    }
  });
}

// --- near misses: look like noise, are not.
for (const path of ['/api/user-metrics', '/api/actuator-report', '/api/metricsfoo', '/actuator', '/isAliveness']) {
  app.get(path, async (req, res) => {
    const [{ count }] = await sql('SELECT count(*) FROM person');
    res.json({ path: req.path, people: Number(count) });
  });
}

// --- person lookups: numbers in paths, SQL literals, Redis keys, span names,
// events and attribute keys.
app.get('/api/person/:fnr', async (req, res) => {
  const { fnr } = req.params;
  await tracer.startActiveSpan(`lookup ${fnr}`, async (span) => {
    try {
      span.setAttribute('enduser.id', fnr);
      let name = await redis.get(`person:${fnr}`);
      if (name === null) {
        span.addEvent(`cache miss for ${fnr}`, { 'person.fnr': fnr });
        // Inlined literal on purpose: the query text then carries the number.
        const rows = await sql(`SELECT name FROM person WHERE fnr = '${fnr}'`);
        if (!rows.length) return res.status(404).json({ error: 'not found' });
        name = rows[0].name;
        await redis.set(`person:${fnr}`, name, 'EX', 300);
      }
      span.setAttribute(`app.cache.${fnr}`, 'warm'); // a number in an attribute key
      span.setAttribute('app.person', { fnr, name }); // kvlist: the JS SDK drops non-primitive values
      res.json({ fnr, name });
    } finally {
      span.end();
    }
  });
});

app.get('/api/person', async (req, res) => {
  const rows = await sql('SELECT name, born FROM person WHERE fnr = $1', [req.query.fnr]);
  if (!rows.length) return res.status(404).json({ error: 'not found' });
  res.json({ fnr: req.query.fnr, name: rows[0].name });
});

app.get('/api/persons', async (req, res) => {
  const ids = String(req.query.ids).split(',');
  trace.getActiveSpan()?.setAttribute('app.person.ids', ids); // array of strings
  const rows = await sql('SELECT fnr, name FROM person WHERE fnr = ANY($1) ORDER BY fnr', [ids]);
  res.json({ people: rows });
});

app.get('/api/search', async (req, res) => {
  const q = String(req.query.q); // the split form, DDMMYY-NNNNN
  trace.getActiveSpan()?.setAttribute('app.search.query', q.replace('-', ' ')); // DDMMYY NNNNN
  const rows = await sql('SELECT name FROM person WHERE fnr = $1', [q.replace(/\D/g, '')]);
  res.json({ hits: rows.map((r) => r.name) });
});

// Throws synchronously on purpose: the express instrumentation records the
// exception on the request-handler span; express then answers 500.
app.get('/api/person/:fnr/consent', (req) => {
  throw new Error(`no consent registered for person ${req.params.fnr}`);
});

// --- ordinary traffic, including 11/12-digit ids that are not personal numbers.
app.get('/api/orders/:id', async (req, res) => {
  const { id } = req.params;
  if (!/^\d+$/.test(id)) return res.status(400).json({ error: 'bad id' });
  const rows = await sql(`SELECT id, amount FROM orders WHERE id = ${BigInt(id)}`);
  await redis.incr(`order:${id}:views`);
  res.json({ id, found: rows.length > 0 });
});

app.get('/api/orders', async (req, res) => {
  const rows = await sql('SELECT id, amount FROM orders ORDER BY id LIMIT $1', [Number(req.query.limit || 5)]);
  res.json({ orders: rows });
});

app.get('/api/products', async (req, res) => {
  await sql('SELECT now()');
  res.json({ products: ['kaffe', 'brunost'] });
});

// --- Kafka: no broker here, so the spans are made with the SDK API following
// the messaging semantic conventions, as a Kafka instrumentation would.
const TOPIC = 'person-events';
const kafkaAttrs = (op, oldOp) => ({
  'messaging.system': 'kafka',
  'messaging.destination.name': TOPIC,
  'messaging.operation': oldOp, // pre-1.26 semconv
  'messaging.operation.name': op,
  'messaging.operation.type': op,
  'messaging.destination.partition.id': '0',
  'server.address': 'kafka.invalid',
  'server.port': 9092,
});

app.get('/api/events/publish', (req, res) => {
  const keys = [
    ['string', NUMBERS.fnr],
    ['int', Number(NUMBERS.fnr_leading_zero)], // the leading zero is lost
    ['int', Number(NUMBERS.dnr)],
    ['bytes', Buffer.from(NUMBERS.hnr)], // the JS SDK drops Buffer/Uint8Array attribute values
  ];
  keys.forEach(([keyType, key], offset) => {
    const prod = tracer.startSpan(`send ${TOPIC}`, { kind: SpanKind.PRODUCER, attributes: kafkaAttrs('send', 'publish') });
    prod.setAttribute('messaging.kafka.message.key', key);
    prod.setAttribute('app.key_type', keyType);
    prod.end();
    // The consumer runs elsewhere: a new trace linked to the producer.
    const root = trace.setSpanContext(context.active(), INVALID_SPAN_CONTEXT);
    const cons = tracer.startSpan(`process ${TOPIC}`, {
      kind: SpanKind.CONSUMER,
      root: true,
      links: [{ context: prod.spanContext(), attributes: { 'messaging.kafka.message.key': NUMBERS.synthetic, 'app.link': 'producer' } }],
      attributes: kafkaAttrs('process', 'process'),
    }, root);
    cons.setAttribute('messaging.kafka.message.key', key);
    cons.setAttribute('messaging.consumer.group.name', 'tracescrub-demo');
    cons.setAttribute('messaging.kafka.consumer.group', 'tracescrub-demo');
    cons.setAttribute('messaging.kafka.message.offset', 41 + offset);
    cons.setAttribute('app.key_type', keyType);
    cons.end();
  });
  res.json({ published: keys.length });
});

// --- capture control, not traced (ignored in tracing.js).
app.post('/_capture/flush', async (req, res) => {
  await processor.forceFlush();
  res.json({ flushed: true });
});

const server = app.listen(Number(process.env.CAPTURE_LISTEN_PORT || 0), '127.0.0.1', () => {
  const file = process.env.CAPTURE_PORT_FILE;
  fs.writeFileSync(`${file}.tmp`, String(server.address().port));
  fs.renameSync(`${file}.tmp`, file); // atomic: readers never see half a port
});

process.on('SIGTERM', async () => {
  server.close();
  // The driver has flushed everything already; flush once more and exit
  // rather than await sdk.shutdown(), which idles for about 7 s.
  await processor.forceFlush().catch(() => {});
  redis.disconnect();
  await pool.end().catch(() => {});
  process.exit(0);
});
