// End to end, in a real browser at device pixel ratio 2: JupyterLab (started by
// tests/test_panels_e2e.py) opens a notebook whose first cells load mlsys_ext and start a
// cluster, and whose next cells each open one panel. Cell by cell, this script runs each
// panel and measures what a student would meet: controls overflowing their box, slider
// tracks, a drag of one slider's handle to the middle of its track, the plot's natural
// against its shown size, and the time from an ArrowRight on that slider to the new image.
// It prints one JSON line of measurements; the test asserts on them.
//
// Environment: lab.mjs's (JUPYTER_URL, JUPYTER_TOKEN, CHROMIUM), NOTEBOOK (its path in the
// server's root), PANELS (JSON: [{label, cell, slider, play, screenshot}]: cell the index of the
// panel's cell, slider the description of the one to drag, play whether to press the panel's
// play button first, screenshot the PNG to write),
// FAILED (the page's PNG to write on a failure).
import { TIMEOUT, dismissNews, launch, log, openNotebook } from './lab.mjs';

const { NOTEBOOK, PANELS, FAILED } = process.env;
const BUSY = /measuring \.\.\.|compiling kernels/;  // a LabPanel's status while it measures
// waits poll every POLL_MS, not at each frame: polling per frame keeps Chromium drawing frames, a
// core's worth on two, which the kernel being timed would share. Times come from events, not polls.
const POLL_MS = 50;

const browser = await launch();
// tall enough for the batching panel's screenshot to hold all of it
const page = await browser.newPage({ viewport: { width: 1400, height: 1600 }, deviceScaleFactor: 2 });
page.setDefaultTimeout(TIMEOUT);

function cell(index) {
  return page.locator('.jp-NotebookPanel .jp-CodeCell').nth(index);
}

// run one cell and wait until its prompt shows an execution count
async function run(index) {
  await cell(index).locator('.jp-InputArea-editor').click();
  await page.keyboard.press('Shift+Enter');
  await page.waitForFunction(i => {
    const prompt = document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')[i].querySelector('.jp-InputPrompt');
    return /\[\d+\]/.test(prompt.textContent);
  }, index, { polling: POLL_MS });
}

// the panel's plot loaded, and no measurement under way
async function settled(box) {
  await box.locator('img').first().waitFor();
  await page.waitForFunction(([element, busy]) => {
    const img = element.querySelector('img');
    return img.complete && img.naturalWidth > 0 && !new RegExp(busy).test(element.textContent);
  }, [await box.elementHandle(), BUSY.source], { polling: POLL_MS });
}

// overflowing boxes, every slider's track, and the plot's sizes
function layout(box) {
  return box.evaluate(element => {
    const boxes = [element, ...element.querySelectorAll('.widget-hbox, .widget-vbox')];
    const overflowing = boxes.filter(b => b.scrollWidth > b.clientWidth)
      .map(b => ({ className: b.className, scrollWidth: b.scrollWidth, clientWidth: b.clientWidth }));
    const sliders = [...element.querySelectorAll('.widget-hslider')].map(s => ({
      description: s.querySelector('.widget-label').textContent,
      track: s.querySelector('.noUi-target').getBoundingClientRect().width
    }));
    const img = element.querySelector('img');
    return {
      overflowing, sliders, devicePixelRatio: window.devicePixelRatio,
      image: { natural: img.naturalWidth, shown: img.getBoundingClientRect().width }
    };
  });
}

function sliderNamed(box, description) {
  return box.locator('.widget-hslider').filter({
    has: page.locator('.widget-label', { hasText: new RegExp(`^${description}$`) })
  }).first();
}

// where the handle's value sits in its range after a drag to the middle of the track, from 0 to
// 1, and whether the value changed (where the middle is the value already, no new image comes)
async function dragToMiddle(slider) {
  const handle = slider.locator('.noUi-handle').first();
  await handle.scrollIntoViewIfNeeded();
  const before = await handle.getAttribute('aria-valuenow');
  const from = await handle.boundingBox();
  const track = await slider.locator('.noUi-target').boundingBox();
  await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
  await page.mouse.down();
  await page.mouse.move(track.x + track.width / 2, track.y + track.height / 2, { steps: 10 });
  await page.mouse.up();
  return handle.evaluate((h, before) => {
    const [low, high, now] = ['aria-valuemin', 'aria-valuemax', 'aria-valuenow'].map(a => Number(h.getAttribute(a)));
    return { fraction: (now - low) / (high - low), moved: h.getAttribute('aria-valuenow') !== before };
  }, before);
}

// ms from a key press (ArrowRight or ArrowLeft) on the slider's focused handle to the next image loaded, or null
async function keyToImage(box, slider, key) {
  const handle = slider.locator('.noUi-handle').first();
  await box.evaluate(element => {
    window.mlsysKey = window.mlsysImage = undefined;
    document.addEventListener('keydown', () => { window.mlsysKey = performance.now(); }, { capture: true, once: true });
    element.querySelector('img').addEventListener('load', () => {
      if (window.mlsysKey !== undefined && window.mlsysImage === undefined) {
        window.mlsysImage = performance.now();
      }
    });
  });
  await handle.focus();
  await page.keyboard.press(key);
  try {
    await page.waitForFunction(() => window.mlsysImage !== undefined, null, { timeout: 60_000, polling: POLL_MS });
  } catch {
    return null;
  }
  return page.evaluate(() => window.mlsysImage - window.mlsysKey);
}

const results = [];
try {
  await openNotebook(page, NOTEBOOK);
  await dismissNews(page);
  const panels = JSON.parse(PANELS);
  for (let index = 0; index < panels[0].cell; index++) {
    await run(index);
  }
  log('extension loaded, cluster started');
  for (const panel of panels) {
    const started = Date.now();
    await run(panel.cell);
    const box = cell(panel.cell).locator('.jp-OutputArea-output .widget-vbox').first();
    await box.scrollIntoViewIfNeeded();
    await settled(box);
    const measured = { label: panel.label, ...await layout(box) };
    if (panel.play) {
      await box.locator('button', { hasText: /^play$/ }).click();
    }
    const slider = sliderNamed(box, panel.slider);
    // first, so at the panel's default sizes: one step right, back, and right again; each
    // press's time to its image, and the kernel's own share as a LabPanel's status reports it
    measured.keyToImageMs = [];
    measured.kernelMs = [];
    for (const key of ['ArrowRight', 'ArrowLeft', 'ArrowRight']) {
      measured.keyToImageMs.push(await keyToImage(box, slider, key));
      await settled(box);
      const status = (await box.textContent()).match(/measured in (\d+) ms, drawn in (\d+) ms/);
      measured.kernelMs.push(status ? { measure: Number(status[1]), draw: Number(status[2]) } : null);
    }
    const before = await box.locator('img').first().getAttribute('src');
    measured.dragged = { slider: panel.slider, ...await dragToMiddle(slider) };
    if (measured.dragged.moved) {  // the kernel may not have heard of the drag yet: wait for its image,
      // or the screenshot would show the picture before it
      await page.waitForFunction(([element, src]) => element.querySelector('img').getAttribute('src') !== src,
        [await box.elementHandle(), before], { timeout: 30_000, polling: POLL_MS }).catch(() => {
        throw new Error(`${panel.label}: no new image 30 s after a drag of ${panel.slider}`);
      });
    }
    await settled(box);
    await box.screenshot({ path: panel.screenshot });
    if (panel.play) {  // stopped again: frames drawn every 0.2 s would load the kernel the next panels are timed on
      await box.locator('button', { hasText: /^play$/ }).click();
    }
    measured.seconds = (Date.now() - started) / 1000;
    log(`${panel.label}: ${JSON.stringify(measured)}`);
    results.push(measured);
  }
} catch (error) {
  await page.screenshot({ path: FAILED }).catch(() => undefined);
  console.error(String(error && error.stack ? error.stack : error));
  process.exitCode = 1;
} finally {
  await browser.close();
  console.log(JSON.stringify({ panels: results }));
}
