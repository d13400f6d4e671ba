// End to end, in a real browser: JupyterLab (started by tests/test_sidebar_e2e.py) opens a
// notebook that loads mlsys_ext and starts a cluster of two actors; the sidebar must show
// both, and after a click on "kill" one of them dead, then back with one restart. After a
// page reload it must follow the notebook in focus; a panel button must run its magic in a
// new cell; after a kernel restart it must offer to load the extension, and fill again when
// clicked.
//
// Environment: lab.mjs's (JUPYTER_URL, JUPYTER_TOKEN, CHROMIUM), NOTEBOOK and OTHER (two notebooks'
// paths in the server's root), SCREENSHOT (the PNG to write).
import { TIMEOUT, dismissNews, launch, log, openNotebook } from './lab.mjs';

const { JUPYTER_URL, JUPYTER_TOKEN, NOTEBOOK, OTHER, SCREENSHOT } = process.env;

const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.setDefaultTimeout(TIMEOUT);
try {
  await openNotebook(page, NOTEBOOK);
  await page.locator('.lm-MenuBar-itemLabel', { hasText: /^Run$/ }).click();
  await page.locator('.lm-Menu-itemLabel', { hasText: /^Run All Cells$/ }).click();
  log('ran all cells');
  await page.locator('li[data-id="mlsys-ext-sidebar"]').click();
  const sidebar = page.locator('#mlsys-ext-sidebar');
  await sidebar.waitFor({ state: 'visible' });
  await page.waitForFunction(() => document.querySelectorAll('#mlsys-ext-sidebar tr.jp-mlsys-actor').length === 2,
    null, { timeout: TIMEOUT });
  log('two actors in the sidebar');
  await sidebar.locator('.jp-mlsys-shared-memory', { hasText: /^shared memory held: 0\.0 MiB in 0 segments in use, 0\.0 MiB pooled for the next messages$/ }).waitFor();
  // every state the row of actor "a" shows from now on
  await page.evaluate(() => {
    window.mlsysStates = [];
    const record = () => {
      const row = document.querySelector('#mlsys-ext-sidebar tr[data-actor="a"]');
      if (row) {
        const state = row.children[2].textContent + ' restarts=' + row.children[3].textContent;
        if (window.mlsysStates[window.mlsysStates.length - 1] !== state) {
          window.mlsysStates.push(state);
        }
      }
    };
    record();
    new MutationObserver(record).observe(document.querySelector('#mlsys-ext-sidebar'),
      { childList: true, subtree: true, characterData: true });
  });
  await sidebar.locator('tr[data-actor="a"] button[data-action="kill"]').click();
  log('clicked kill on actor a');
  await page.waitForFunction(() => {
    const row = document.querySelector('#mlsys-ext-sidebar tr[data-actor="a"]');
    return row && row.children[2].textContent === 'alive' && row.children[3].textContent === '1';
  }, null, { timeout: TIMEOUT });
  const states = await page.evaluate(() => window.mlsysStates);
  log(`states of a: ${JSON.stringify(states)}`);
  if (!states.some(s => s.startsWith('dead'))) {
    throw new Error(`actor a was never shown dead: ${JSON.stringify(states)}`);
  }
  await dismissNews(page);
  await page.screenshot({ path: SCREENSHOT });
  log(`screenshot: ${SCREENSHOT}`);
  // a page reload and another notebook: the sidebar follows the notebook in focus, and
  // finds the extension already loaded in the first notebook's kernel
  await page.goto(`${JUPYTER_URL}/lab/tree/${OTHER}?token=${JUPYTER_TOKEN}`);
  await page.waitForSelector('.jp-NotebookPanel .jp-Cell');
  if (!(await sidebar.isVisible())) {  // the tab toggles: click only when the sidebar is closed
    await page.locator('li[data-id="mlsys-ext-sidebar"]').click();
  }
  await sidebar.locator('text=has not loaded mlsys_ext').waitFor();
  log('another notebook: not loaded');
  await page.locator('.lm-TabBar-tab', { hasText: NOTEBOOK }).click();
  await page.waitForFunction(() => document.querySelectorAll('#mlsys-ext-sidebar tr.jp-mlsys-actor').length === 2,
    null, { timeout: TIMEOUT });
  log('back on the first notebook: its two actors again');
  // a panel button puts the panel's magic in a new cell and runs it
  await sidebar.locator('.jp-mlsys-panels button', { hasText: /^Bloom filter$/ }).click();
  await page.locator('.jp-NotebookPanel .jp-CodeCell', { hasText: '%bloom' }).locator('.jp-OutputArea-output')
    .first().waitFor();
  log('the Bloom filter button ran %bloom in a new cell');
  // a kernel restart empties the sidebar; its button loads the extension and it fills again
  await page.locator('.lm-MenuBar-itemLabel', { hasText: /^Kernel$/ }).click();
  await page.locator('.lm-Menu-itemLabel', { hasText: /^Restart Kernel/ }).first().click();
  await page.locator('.jp-Dialog button', { hasText: /^Restart$/ }).click();
  await sidebar.locator('button[data-action="load"]').click();
  await sidebar.locator('text=No cluster in this kernel').waitFor();
  log('after a restart, the load button filled the sidebar again');
  console.log(JSON.stringify({ ok: true, states, reloaded: true }));
} catch (error) {
  await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, '-failed.png') }).catch(() => undefined);
  console.error(String(error && error.stack ? error.stack : error));
  process.exitCode = 1;
} finally {
  await browser.close();
}
