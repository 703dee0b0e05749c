// Opens URL in headless Chromium (Debian's, via playwright-core: no browser download),
// waits for the page to finish, and prints what #result shows.
// Usage: node run.mjs CHROMIUM_PATH URL
import { chromium } from "playwright-core";

const [executablePath, url] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
try {
  const page = await browser.newPage();
  page.on("console", (message) => console.error(`console: ${message.text()}`));
  page.on("pageerror", (error) => console.error(`page error: ${error}`));
  await page.goto(url);
  try {
    await page.waitForSelector("#result[data-done]", { timeout: 30000 });
  } catch (error) {
    console.error(`the page did not finish; it shows: ${await page.textContent("#result")}`);
    throw error;
  }
  console.log(await page.textContent("#result"));
} finally {
  await browser.close();
}
