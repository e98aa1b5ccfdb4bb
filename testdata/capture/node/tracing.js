'use strict';
// OpenTelemetry setup, loaded with `node --require ./tracing.js` so the
// instrumentations patch express, pg and ioredis before service.js loads them.
//
// Environment (set by regenerate.sh):
//   CAPTURE_ENCODING protobuf | json   which OTLP/HTTP exporter to use
//   CAPTURE_GZIP     1 to gzip export bodies
//   CAPTURE_SINK     full URL of the capture sink's /v1/traces

const { NodeSDK } = require('@opentelemetry/sdk-node');
const { getNodeAutoInstrumentations } = require('@opentelemetry/auto-instrumentations-node');
const { BatchSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { resourceFromAttributes } = require('@opentelemetry/resources');

const Exporter = process.env.CAPTURE_ENCODING === 'protobuf'
  ? require('@opentelemetry/exporter-trace-otlp-proto').OTLPTraceExporter
  : require('@opentelemetry/exporter-trace-otlp-http').OTLPTraceExporter; // JSON encoding

const exporter = new Exporter({
  url: process.env.CAPTURE_SINK,
  compression: process.env.CAPTURE_GZIP === '1' ? 'gzip' : 'none',
});

// Long delay, big batches: only the driver's explicit flushes cut batches,
// so each recorded file holds one scenario group.
const processor = new BatchSpanProcessor(exporter, {
  scheduledDelayMillis: 600000,
  maxExportBatchSize: 4096,
  maxQueueSize: 8192,
});

const sdk = new NodeSDK({
  // Small, fixed resource: no host/process/env detectors.
  autoDetectResources: false,
  resource: resourceFromAttributes({
    'service.name': 'tracescrub-capture-node',
    'service.version': '1.0.0',
    'deployment.environment.name': 'capture',
  }),
  spanProcessors: [processor],
  instrumentations: [getNodeAutoInstrumentations({
    // Only what the service uses; fs/dns/net would add hundreds of spans.
    '@opentelemetry/instrumentation-fs': { enabled: false },
    '@opentelemetry/instrumentation-dns': { enabled: false },
    '@opentelemetry/instrumentation-net': { enabled: false },
    '@opentelemetry/instrumentation-http': {
      // The capture-control endpoint is not traffic.
      ignoreIncomingRequestHook: (req) => (req.url || '').startsWith('/_capture/'),
    },
    // Bind values into db.postgresql.values, as teams that turn it on get.
    '@opentelemetry/instrumentation-pg': { enhancedDatabaseReporting: true },
  })],
});
sdk.start();

module.exports = { processor };
