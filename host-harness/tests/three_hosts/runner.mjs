// The Node.js host of the three-host conformance test: the tracescrub
// component transpiled by jco, driven through the bindings jco generates.
//
//   node runner.mjs run BINDINGS_DIR CONFIG_JSON_FILE IN_DIR OUT_DIR
//
// BINDINGS_DIR holds `jco transpile`'s output for the component (its entry
// module is tracescrub_processor.js). The protocol is the one every host of
// the test follows (see three_hosts.rs): create once with the config file's
// text, process every IN_DIR/*.binpb in name order, write each output batch to
// OUT_DIR/<name> and everything else to OUT_DIR/results.json.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [command, bindingsDir, configFile, inDir, outDir] = process.argv.slice(2);
if (command !== 'run' || !outDir) {
  console.error('usage: node runner.mjs run BINDINGS_DIR CONFIG_JSON_FILE IN_DIR OUT_DIR');
  process.exit(2);
}

const entry = pathToFileURL(resolve(bindingsDir, 'tracescrub_processor.js')).href;
const { transform } = await import(entry);

// jco throws a ComponentError whose payload is the WIT `error` variant as
// { tag, val }; u64 values arrive as BigInt.
function error(e) {
  const payload = e && e.payload;
  if (!payload || typeof payload.tag !== 'string') throw e; // a trap: not an `error`
  const val = payload.val;
  switch (payload.tag) {
    case 'invalid-config':
      return { kind: 'invalid-config', problems: val.map((p) => ({ path: p.path, reason: p.reason })) };
    case 'malformed-batch':
      return { kind: 'malformed-batch', offset: Number(val.offset), reason: val.reason };
    case 'batch-too-large':
      return { kind: 'batch-too-large', size: Number(val.size), limit: Number(val.limit) };
    case 'out-of-memory':
      return { kind: 'out-of-memory', what: val };
    default:
      throw new Error(`unknown error variant ${payload.tag}`);
  }
}

const counts = (list) => list.map((c) => ({ name: c.name, value: Number(c.value) }));

function stats(s) {
  return {
    spans_in: Number(s.spansIn),
    spans_out: Number(s.spansOut),
    spans_dropped: Number(s.spansDropped),
    dropped_by_rule: counts(s.droppedByRule),
    dropped_descendants: Number(s.droppedDescendants),
    values_masked: Number(s.valuesMasked),
    masked_by_detector: counts(s.maskedByDetector),
    masked_by_field: counts(s.maskedByField),
  };
}

mkdirSync(outDir, { recursive: true });
const results = {};
let processor;
try {
  processor = transform.Processor.create(readFileSync(configFile, 'utf8'));
  results.create = { ok: true };
} catch (e) {
  results.create = { error: error(e) };
}

if (processor) {
  results.batches = {};
  const names = readdirSync(inDir).filter((n) => n.endsWith('.binpb')).sort();
  for (const name of names) {
    const input = new Uint8Array(readFileSync(join(inDir, name)));
    try {
      const output = processor.process(input);
      writeFileSync(join(outDir, name), output.batch);
      results.batches[name] = { stats: stats(output.stats) };
    } catch (e) {
      results.batches[name] = { error: error(e) };
    }
  }
}

writeFileSync(join(outDir, 'results.json'), JSON.stringify(results, null, 1));
