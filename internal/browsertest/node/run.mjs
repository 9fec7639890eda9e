// Test-only runner for internal/browsertest: starts Debian's headless
// Chromium with playwright-core, imports the test's scenario module and
// calls its default export with { browser, context, newPage, input }.
//
// stdin:  {"scenario": "/abs/path.mjs", "input": <any>, "spkiPins": ["base64"],
//          "executable": "/usr/bin/chromium", "timeoutMs": 60000}
// stdout: one JSON line {"ok": true, "result": <any>, "console": [...]}
//         or {"ok": false, "error": "...", "console": [...]}
//
// console lists every console message, page error and CSP violation the
// pages reported, as {"page", "type", "text"}, so a test can assert that
// a page ran without any.
import { chromium } from 'playwright-core';
import { pathToFileURL } from 'node:url';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
if (req.spkiPins && req.spkiPins.length > 0) {
  // Trust exactly the test server's key, as a pinning client would: the
  // certificate chain is not otherwise checked, nothing else is trusted.
  args.push('--ignore-certificate-errors-spki-list=' + req.spkiPins.join(','));
}

const consoleLog = [];
let browser;
const timer = setTimeout(() => {
  process.stdout.write(JSON.stringify({ ok: false, error: 'scenario timed out', console: consoleLog }) + '\n');
  process.exit(2);
}, req.timeoutMs || 60000);

try {
  browser = await chromium.launch({ executablePath: req.executable || '/usr/bin/chromium', args, headless: true });
  const context = await browser.newContext();
  let pages = 0;
  const newPage = async () => {
    const page = await context.newPage();
    const name = 'page' + (++pages);
    page.on('console', (m) => consoleLog.push({ page: name, type: m.type(), text: m.text() }));
    page.on('pageerror', (e) => consoleLog.push({ page: name, type: 'pageerror', text: String(e) }));
    // CSP violations reach the page as events; report them too.
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI);
      });
    });
    return page;
  };
  const mod = await import(pathToFileURL(req.scenario).href);
  const result = await mod.default({ browser, context, newPage, input: req.input });
  process.stdout.write(JSON.stringify({ ok: true, result: result === undefined ? null : result, console: consoleLog }) + '\n');
} catch (e) {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.stack || e), console: consoleLog }) + '\n');
} finally {
  clearTimeout(timer);
  if (browser) await browser.close().catch(() => {});
}
