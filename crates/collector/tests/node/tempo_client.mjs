// Drives the Perses Tempo plugin's own client (@perses-dev/tempo-plugin, from npm) against a
// Tempo API, as the Perses UI would, and prints what each call returned as one JSON object.
//
// Usage: node tempo_client.mjs BASE_URL TRACE_ID
//
// The plugin's client module pulls @perses-dev/core, whose index imports React (for hooks
// this client never calls). It is loaded with core's two React-free modules it does use
// (utils/fetch, model/otlp) in core's place, so no browser or React is needed.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const corePath = require.resolve('@perses-dev/core');
require.cache[corePath] = {
  id: corePath,
  filename: corePath,
  loaded: true,
  exports: {
    ...require('@perses-dev/core/dist/cjs/utils/fetch.js'),
    ...require('@perses-dev/core/dist/cjs/model/otlp/index.js'),
  },
};
const tempo = require('@perses-dev/tempo-plugin/lib/cjs/model/tempo-client.js');

const [base, traceId] = process.argv.slice(2);
const opts = { datasourceUrl: base };
const now = Math.floor(Date.now() / 1000);
const window = { start: now - 3600, end: now + 60 };
const out = {};
const call = async (name, fn) => {
  try {
    out[name] = await fn();
  } catch (e) {
    out[name] = { error: `${e.constructor.name}: ${e.message}` };
  }
};
await call('search', () => tempo.search({ q: '{resource.service.name="py-orchestrator" && status=error}', ...window, limit: 20, spss: 3 }, opts));
await call('searchAll', () => tempo.searchWithFallback({ q: '{}', ...window, limit: 20 }, opts));
await call('query', () => tempo.query({ traceId }, opts));
await call('tags', () => tempo.searchTags({ scope: 'resource', ...window }, opts));
await call('allTags', () => tempo.searchTags({ ...window }, opts));
await call('serviceNames', () => tempo.searchTagValues({ tag: 'resource.service.name', q: '{}', ...window }, opts));
await call('spanNames', () => tempo.searchTagValues({ tag: 'name', q: '{span.gen_ai.operation.name="chat"}', ...window }, opts));
// The rest of what Grafana's query builder writes: a regex, `||`, duration bounds.
await call('regex', () => tempo.search({ q: '{name=~"execute_tool.*"}', ...window, limit: 20 }, opts));
await call('either', () => tempo.search({ q: '{name="execute_tool search" || name=~"chat .*"}', ...window, limit: 20 }, opts));
await call('shortSpans', () => tempo.search({ q: '{name=~"chat .*" && duration < 1h}', ...window, limit: 20 }, opts));
await call('longSpans', () => tempo.search({ q: '{duration > 1h}', ...window, limit: 20 }, opts));
await call('badQuery', () => tempo.search({ q: '{name=}', ...window }, opts));
console.log(JSON.stringify(out));
