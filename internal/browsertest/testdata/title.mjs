// Loads each URL of input.urls and returns the titles and the text the
// page's own script wrote into #out.
export default async ({ newPage, input }) => {
  const out = [];
  for (const url of input.urls) {
    const page = await newPage();
    await page.goto(url);
    await page.waitForLoadState('load');
    out.push({ title: await page.title(), text: await page.textContent('#out') });
  }
  return out;
};
