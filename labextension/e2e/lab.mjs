// What the end-to-end scripts share: Chromium launched for this machine, a log line, and a
// notebook opened with its kernel ready. Environment: JUPYTER_URL, JUPYTER_TOKEN, CHROMIUM.
import { chromium } from 'playwright-core';

export const TIMEOUT = 120_000;
const { JUPYTER_URL, JUPYTER_TOKEN, CHROMIUM } = process.env;

export function log(message) {
  console.log(`[e2e ${new Date().toISOString().slice(11, 19)}] ${message}`);
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // as root, and with no network beyond this machine (the flags keep Chromium from calling home)
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync']
  });
}

// go to ``notebook`` (a path in the server's root) and wait until its kernel is idle
export async function openNotebook(page, notebook) {
  await page.goto(`${JUPYTER_URL}/lab/tree/${notebook}?token=${JUPYTER_TOKEN}`);
  await page.waitForSelector('.jp-NotebookPanel .jp-Cell');
  log(`${notebook} open`);
  // the kernel must be ready before cells run: the status bar says so
  await page.locator('.jp-StatusBar-Widget', { hasText: 'Idle' }).first().waitFor();
  log('kernel idle');
}

// JupyterLab asks about its news feed in a toast that would cover what a screenshot shows
export async function dismissNews(page) {
  const news = page.locator('.jp-toast-button', { hasText: /^No$/ });
  if (await news.count()) {
    await news.first().click();
    await page.locator('.jp-toast-button').first().waitFor({ state: 'detached' }).catch(() => undefined);
  }
}
