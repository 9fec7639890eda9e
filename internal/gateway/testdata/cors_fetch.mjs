// For each of input.pages, opens the page (a browser app's origin) and
// has it fetch input.url through the gateway with the bearer input.token,
// as a SMART app in a patient portal would. Returns, per page, whether
// the fetch resolved, its status and body, or the error the browser gave.
export default async ({ newPage, input }) => {
  const out = [];
  for (const pageURL of input.pages) {
    const page = await newPage();
    await page.goto(pageURL);
    out.push(await page.evaluate(async ({ url, token }) => {
      try {
        const r = await fetch(url, { headers: { Authorization: 'Bearer ' + token, Accept: 'application/fhir+json' } });
        return { ok: true, status: r.status, body: await r.text(), requestId: r.headers.get('X-Request-Id') };
      } catch (e) {
        return { ok: false, error: String(e && e.message || e) };
      }
    }, { url: input.url, token: input.token }));
  }
  return out;
};
