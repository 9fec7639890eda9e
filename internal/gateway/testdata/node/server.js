'use strict';
// A FHIR R4 upstream for phigate's gateway tests, built on the third-party
// framework @asymmetrik/node-fhir-server-core: small in-memory services for
// Patient, Observation, Encounter, Condition and MedicationRequest over the
// synthetic seed of seed.js. SYNTHETIC DATA ONLY; never run it elsewhere.
//
// Environment (set by the Go test that starts it):
//   FHIR_TLS_CERT, FHIR_TLS_KEY  PEM files of the server's certificate and key
//   FHIR_NOW                     the test clock's instant (RFC 3339), for meta.lastUpdated
// It listens on 127.0.0.1, a port the system chooses, and prints one line
//   PHIGATE-FHIR-NODE-LISTENING <port>
// on stdout once it accepts connections. Its base is https://127.0.0.1:<port>/4_0_1.
//
// The framework routes each interaction to the services and answers what
// they return; it builds no Bundle and no paging links of its own, so the
// search service does, absolute on the request's own base as FHIR servers
// do: self, next and previous, paged by _count (default 20, at most 100)
// and _page (1-based). Its batch route is not enabled by the framework
// (base routes are never registered in 2.2.5), so a POST of a batch or
// transaction Bundle to the base is answered here, each entry run against
// the same services. Errors are the framework's OperationOutcomes.

const fs = require('fs');
const https = require('https');
const { Server, ServerError, constants } = require('@asymmetrik/node-fhir-server-core');
const { seed } = require('./seed');

const VERSION = constants.VERSIONS['4_0_1'];
const DEFAULT_COUNT = 20;
const MAX_COUNT = 100;

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`fhir-node: ${name} is required`);
    process.exit(2);
  }
  return v;
}

const now = new Date(need('FHIR_NOW'));
if (Number.isNaN(now.getTime())) {
  console.error('fhir-node: FHIR_NOW is not an RFC 3339 instant');
  process.exit(2);
}
const tlsOptions = { cert: fs.readFileSync(need('FHIR_TLS_CERT')), key: fs.readFileSync(need('FHIR_TLS_KEY')) };
const data = seed(now);
let listeningBase = '';
let created = 0;

function notFound(type, id) {
  return new ServerError(`Resource ${type}/${id} is not known`, {
    statusCode: 404,
    issue: [{ severity: 'error', code: 'not-found', details: { text: `Resource ${type}/${id} is not known` } }],
  });
}

function invalid(text) {
  return new ServerError(text, { statusCode: 400, issue: [{ severity: 'error', code: 'invalid', details: { text } }] });
}

function baseOf(req) {
  return `${req.protocol}://${req.get('host')}/${VERSION}`;
}

function one(v) {
  return Array.isArray(v) ? v : v === undefined ? [] : [v];
}

function patientOf(r) {
  if (r.resourceType === 'Patient') return r.id;
  return r.subject && r.subject.reference ? r.subject.reference.replace(/^Patient\//, '') : '';
}

const INCLUDES = { subject: 'subject', patient: 'subject', encounter: 'encounter' };

function find(type, id) {
  return data[type].find((r) => r.id === id);
}

function searchBundle(type, query, base) {
  let rows = data[type];
  for (const [k, v] of Object.entries(query)) {
    const name = k.split(':')[0];
    if ((name === 'patient' || name === 'subject') && type !== 'Patient') {
      for (const val of one(v)) {
        const alts = String(val).split(',').map((s) => s.replace(/^Patient\//, ''));
        rows = rows.filter((r) => alts.includes(patientOf(r)));
      }
    } else if (k === '_id') {
      for (const val of one(v)) {
        const ids = String(val).split(',');
        rows = rows.filter((r) => ids.includes(r.id));
      }
    }
  }
  let count = query._count === undefined ? DEFAULT_COUNT : Number(query._count);
  let page = query._page === undefined ? 1 : Number(query._page);
  if (!Number.isInteger(count) || count < 0) throw invalid(`invalid _count ${query._count}`);
  if (!Number.isInteger(page) || page < 1) throw invalid(`invalid _page ${query._page}`);
  count = Math.min(count, MAX_COUNT);
  const start = (page - 1) * count;
  const slice = rows.slice(start, start + count);
  const entry = slice.map((r) => ({ fullUrl: `${base}/${type}/${r.id}`, resource: r, search: { mode: 'match' } }));
  const added = new Set();
  for (const inc of one(query._include)) {
    const [src, param, target, ...more] = String(inc).split(':');
    const targets = { subject: 'Patient', patient: 'Patient', encounter: 'Encounter' };
    if (src !== type || (param !== '*' && !INCLUDES[param]) || more.length > 0 || (target !== undefined && targets[param] !== target)) {
      throw invalid(`invalid _include ${inc}`);
    }
    const elems = param === '*' ? ['subject', 'encounter'] : [INCLUDES[param]];
    for (const r of slice) {
      for (const el of elems) {
        const ref = r[el] && r[el].reference;
        if (!ref || added.has(ref)) continue;
        const [t, id] = ref.split('/');
        const target = data[t] && find(t, id);
        if (!target) continue;
        added.add(ref);
        entry.push({ fullUrl: `${base}/${ref}`, resource: target, search: { mode: 'include' } });
      }
    }
  }
  const link = (p) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (k === '_page' || k === '_count') continue;
      for (const val of one(v)) q.append(k, String(val));
    }
    q.set('_count', String(count));
    q.set('_page', String(p));
    return `${base}/${type}?${q.toString()}`;
  };
  const links = [{ relation: 'self', url: link(page) }];
  if (count > 0 && start + count < rows.length) links.push({ relation: 'next', url: link(page + 1) });
  if (page > 1) links.push({ relation: 'previous', url: link(page - 1) });
  return { resourceType: 'Bundle', type: 'searchset', total: rows.length, link: links, entry };
}

function service(type) {
  return {
    search: async (_args, { req }) => searchBundle(type, req.query, baseOf(req)),
    searchById: async (args) => {
      const r = find(type, args.id);
      if (!r) throw notFound(type, args.id);
      return r;
    },
    searchByVersionId: async (args) => {
      const r = find(type, args.id);
      if (!r || args.version_id !== r.meta.versionId) throw notFound(type, `${args.id}/_history/${args.version_id}`);
      return r;
    },
    historyById: async (args, { req }) => {
      const r = find(type, args.id);
      if (!r) throw notFound(type, args.id);
      const base = baseOf(req);
      return {
        resourceType: 'Bundle',
        type: 'history',
        total: 1,
        link: [{ relation: 'self', url: `${base}/${type}/${r.id}/_history` }],
        entry: [
          {
            fullUrl: `${base}/${type}/${r.id}`,
            resource: r,
            request: { method: 'POST', url: type },
            response: { status: '201 Created', etag: 'W/"1"' },
          },
        ],
      };
    },
    create: async (_args, { req }) => {
      const body = req.body || {};
      if (body.resourceType !== type) throw invalid(`resourceType is not ${type}`);
      created += 1;
      const r = { ...body, id: `new-${created}`, meta: { versionId: '1', lastUpdated: now.toISOString() } };
      data[type].push(r);
      return { id: r.id, resource_version: '1' };
    },
  };
}

// runEntry runs one batch entry against the services.
async function runEntry(e, req) {
  const request = e.request || {};
  const method = String(request.method || '').toUpperCase();
  const u = new URL(String(request.url || ''), 'relative:/');
  if (u.protocol !== 'relative:' || String(request.url).startsWith('/')) throw invalid('request.url must be relative to the base');
  const seg = u.pathname.slice(1).split('/');
  const type = seg[0];
  if (!data[type]) throw notFound(type, '');
  const svc = service(type);
  const query = {};
  for (const [k, v] of u.searchParams) query[k] = query[k] === undefined ? v : [].concat(query[k], v);
  if (method === 'GET' && seg.length === 1) return { status: '200 OK', resource: searchBundle(type, query, baseOf(req)) };
  if (method === 'GET' && seg.length === 2) return { status: '200 OK', resource: await svc.searchById({ id: seg[1] }) };
  if (method === 'POST' && seg.length === 1) {
    const r = await svc.create({}, { req: { body: e.resource } });
    return { status: '201 Created', location: `${type}/${r.id}/_history/1` };
  }
  throw invalid(`${method} ${request.url} is not supported in a batch`);
}

function outcomeOf(err) {
  return {
    resourceType: 'OperationOutcome',
    issue: err.issue || [{ severity: 'error', code: 'exception', details: { text: String(err.message) } }],
  };
}

const profile = (type) => ({ service: service(type), versions: [VERSION] });
const config = {
  profiles: {
    patient: profile('Patient'),
    observation: profile('Observation'),
    encounter: profile('Encounter'),
    condition: profile('Condition'),
    medicationrequest: profile('MedicationRequest'),
  },
  server: {},
  logging: { level: 'error' },
  statementGenerator: () => {
    const gen = require('@asymmetrik/node-fhir-server-core/dist/server/metadata/capability.4_0_1.js');
    return {
      securityStatement: gen.securityStatement,
      makeStatement: (rest) => {
        const cs = gen.makeStatement(rest);
        cs.implementation = { description: 'phigate test upstream (node-fhir-server-core)', url: listeningBase };
        cs.date = now.toISOString(); // the test clock, not the framework's
        return cs;
      },
    };
  },
};

const server = new Server(config).configureMiddleware().configureSession().configureHelmet().configurePassport();
server.app.post(`/${VERSION}`, async (req, res) => {
  const b = req.body || {};
  if (b.resourceType !== 'Bundle' || (b.type !== 'batch' && b.type !== 'transaction')) {
    res.status(400).json(outcomeOf(invalid('expected a batch or transaction Bundle')));
    return;
  }
  const entries = [];
  for (const e of b.entry || []) {
    try {
      const r = await runEntry(e, req);
      const response = { status: r.status };
      if (r.location) response.location = r.location;
      entries.push(r.resource ? { resource: r.resource, response } : { response });
    } catch (err) {
      const status = err.statusCode || 500;
      if (b.type === 'transaction') {
        res.status(status).json(outcomeOf(err));
        return;
      }
      entries.push({ response: { status: String(status), outcome: outcomeOf(err) } });
    }
  }
  res.type('application/fhir+json').json({
    resourceType: 'Bundle',
    type: `${b.type}-response`,
    link: [{ relation: 'self', url: baseOf(req) }],
    entry: entries,
  });
});
server.setPublicDirectory().setProfileRoutes().setErrorRoutes();

const listener = https.createServer(tlsOptions, server.app);
listener.listen(0, '127.0.0.1', () => {
  const { port } = listener.address();
  listeningBase = `https://127.0.0.1:${port}/${VERSION}`;
  process.stdout.write(`PHIGATE-FHIR-NODE-LISTENING ${port}\n`);
});
process.on('SIGTERM', () => listener.close(() => process.exit(0)));
