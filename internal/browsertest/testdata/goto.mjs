// Tries to load input.url; returns whether it loaded or the error.
export default async ({ newPage, input }) => {
  const page = await newPage();
  try {
    await page.goto(input.url);
    return { loaded: true };
  } catch (e) {
    return { loaded: false, error: String(e.message || e) };
  }
};
