// How the browser tests (tests/e2e) and the /docs judge (tests/node) launch Debian's
// chromium through playwright-core: one definition of the executable and its flags.

/** The browser: `CHROMIUM`, else Debian's package. */
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Headless, no sandbox (containers), nothing fetched in the background. */
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The options for `chromium.launch()` (playwright keeps its own profile directory). */
export const launchOptions = { executablePath: CHROMIUM, args: CHROMIUM_FLAGS };
