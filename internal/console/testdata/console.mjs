// The console in a real browser, under its CSP: log in, list tokens,
// issue one and see its secret once (with the script's copy button),
// revoke it, open the audit explorer and see the verification badge.
// Screenshots of each page go to input.shots.
export default async ({ context, newPage, input }) => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: input.base });
  const page = await newPage();
  const out = {};
  const shot = async (name) => page.screenshot({ path: input.shots + '/' + name + '.png', fullPage: true });
  const submit = async (selector) => Promise.all([page.waitForNavigation(), page.click(selector)]);

  await page.goto(input.base + '/console/login');
  await shot('login');
  await page.fill('#token', input.token);
  await submit('form.login button[type=submit]');
  out.afterLogin = new URL(page.url()).pathname;
  out.overviewSVG = await page.locator('svg.chart').count();
  await shot('overview');

  await page.goto(input.base + '/console/tokens');
  out.listed = await page.locator('#tokens tbody tr').count();
  out.victimListed = (await page.content()).includes(input.victim);
  await page.click('details.card summary');
  await page.fill('details form input[name=subject]', 'browser-app');
  await page.fill('details form input[name=scopes]', 'patient/Observation.rs');
  await shot('tokens');
  await submit('details form button[type=submit]');
  out.secret = await page.inputValue('#secret');
  out.newId = (await page.textContent('#token-id')).trim();
  out.copyVisible = await page.isVisible('button.copy');
  await page.click('button.copy');
  out.copyText = (await page.textContent('button.copy')).trim();
  out.clipboard = await page.evaluate(() => navigator.clipboard.readText()).catch((e) => 'unreadable: ' + e);
  await shot('token-issued');

  await page.goto(input.base + '/console/tokens/' + out.newId);
  out.secretAgain = await page.locator('#secret').count();
  await submit('#revoke button[type=submit]');
  out.status = (await page.textContent('#status')).trim();
  await shot('token-revoked');

  await page.goto(input.base + '/console/audit?patient=' + encodeURIComponent(input.patient));
  out.badge = (await page.textContent('#badge')).trim();
  out.entries = await page.locator('#entries details').count();
  await page.click('#entries details summary');
  out.expanded = await page.locator('#entries details[open]').count();
  await shot('audit');

  await page.goto(input.base + '/console/disclosures?patient=' + encodeURIComponent(input.patient));
  out.disclosures = await page.locator('#disclosures tbody tr').count();
  await page.emulateMedia({ media: 'print' });
  out.printHidesNav = !(await page.isVisible('header.top'));
  await shot('disclosures-print');
  await page.emulateMedia({ media: 'screen' });

  await page.goto(input.base + '/console/alerts');
  out.alerts = await page.locator('#alerts tbody tr').count();
  await shot('alerts');
  return out;
};
