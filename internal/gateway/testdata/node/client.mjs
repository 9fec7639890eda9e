// A stock FHIR client, fhir-kit-client, driven by the gateway's Go tests
// (stockclient_test.go) and pointed at the real gateway over TLS (the Go
// test passes the gateway's certificate in NODE_EXTRA_CA_CERTS).
//
// It reads a plan on stdin, a JSON array of steps, runs each with the
// client's own calls, and writes one JSON array of results on stdout, so
// that every check is made in Go. A step:
//   {"op":"search","base":"https://…/node/","token":"…","resourceType":"Observation",
//    "searchParams":{"patient":"pat-a","_count":"5"},"follow":true}
//   {"op":"read"|"vread"|"history","resourceType":"…","id":"…","version":"1"}
//   {"op":"metadata"}  {"op":"batch"|"transaction","body":{…}}  {"op":"get","url":"…"}
// token may be empty (no Authorization). A result is {"ok":true,"pages":[…]}
// (search: every page reached with nextPage(), at most 50) or
// {"ok":true,"body":…}, or, when the client raised, {"ok":false,"status":N,
// "contentType":"…","data":<the body as the client parsed it>,"message":"…"}.
import { Client } from 'fhir-kit-client';

const MAX_PAGES = 50;

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function run(step) {
  const client = new Client({ baseUrl: step.base });
  if (step.token) client.bearerToken = step.token;
  switch (step.op) {
    case 'search': {
      const pages = [];
      let page = await client.search({ resourceType: step.resourceType, searchParams: step.searchParams || {} });
      while (page) {
        pages.push(page);
        if (!step.follow || pages.length >= MAX_PAGES) break;
        page = await client.nextPage({ bundle: page });
      }
      return { ok: true, pages };
    }
    case 'read':
      return { ok: true, body: await client.read({ resourceType: step.resourceType, id: step.id }) };
    case 'vread':
      return { ok: true, body: await client.vread({ resourceType: step.resourceType, id: step.id, version: step.version }) };
    case 'history':
      return { ok: true, body: await client.history({ resourceType: step.resourceType, id: step.id }) };
    case 'metadata':
      return { ok: true, body: await client.capabilityStatement() };
    case 'batch':
      return { ok: true, body: await client.batch({ body: step.body }) };
    case 'transaction':
      return { ok: true, body: await client.transaction({ body: step.body }) };
    case 'get':
      return { ok: true, body: await client.request(step.url) };
    default:
      throw new Error(`unknown op ${step.op}`);
  }
}

const plan = await readStdin();
const results = [];
for (const step of plan) {
  try {
    results.push(await run(step));
  } catch (err) {
    const r = err.response || {};
    const headers = err.config && err.config.headers;
    results.push({
      ok: false,
      status: r.status || 0,
      contentType: headers && typeof headers.get === 'function' ? headers.get('content-type') : '',
      data: r.data === undefined ? null : r.data,
      message: String(err.message),
    });
  }
}
process.stdout.write(JSON.stringify(results));
