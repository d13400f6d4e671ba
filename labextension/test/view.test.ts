import { describe, expect, it, vi } from 'vitest';

import { PROTOCOL, SidebarModel } from '../src/model';
import { byteRate, environmentLine, render, stateLabel } from '../src/view';
import { state } from './fixtures';

function drawn(model: SidebarModel) {
  const root = document.createElement('div');
  const handlers = { load: vi.fn(), openPanel: vi.fn() };
  render(root, model, handlers);
  return { root, handlers };
}

/** A connected model holding the fixture state, drawn; what it sends is kept. */
function live() {
  const model = new SidebarModel();
  const sent: Record<string, unknown>[] = [];
  model.connect({ send: data => sent.push(data) });
  model.receive({ type: 'state', protocol: PROTOCOL, state: state() });
  return { model, sent, root: drawn(model).root };
}

function click(root: HTMLElement, selector: string): void {
  (root.querySelector(selector) as HTMLButtonElement).click();
}

describe('render', () => {
  it('offers to load the extension in a kernel without it', () => {
    const model = new SidebarModel();
    model.reset('not-loaded', 'Untitled.ipynb');
    const { root, handlers } = drawn(model);
    expect(root.textContent).toContain('has not loaded mlsys_ext');
    click(root, 'button[data-action="load"]');
    expect(handlers.load).toHaveBeenCalledOnce();
  });

  it('shows each actor with its state, and sends the action of the button clicked', () => {
    const { sent, root } = live();
    const rows = root.querySelectorAll('tr.jp-mlsys-actor');
    expect(rows).toHaveLength(2);
    expect(rows[0].textContent).toContain('101');
    expect(rows[0].textContent).toContain('2.5');
    expect(root.querySelector('tr[data-actor="b"]')!.className).toContain('jp-mlsys-state-paused');
    click(root, 'tr[data-actor="a"] button[data-action="kill"]');
    click(root, 'tr[data-actor="b"] button[data-action="resume"]');  // a paused actor offers resume
    expect(root.querySelector('tr[data-actor="b"] button[data-action="pause"]')).toBeNull();
    click(root, 'button[data-action="stop"]');
    expect(sent.map(m => [m.action, m.name])).toEqual([['kill', 'a'], ['resume', 'b'], ['stop', undefined]]);
    expect(root.querySelector('.jp-mlsys-environment')!.textContent).toBe(
      '2 CPUs · numba workqueue · CUDA no · CuPy no · Ray yes');
  });

  it('shows the busiest links in bytes per second and the shared memory held', () => {
    const { root } = live();
    const rows = [...root.querySelectorAll('tr.jp-mlsys-link')].map(row => row.textContent);
    expect(rows).toEqual(['driver → a12.52.5 MB/s', 'a → b3.0120 B/s']);
    expect(root.querySelector('.jp-mlsys-shared-memory')!.textContent).toBe('shared memory held: 4.0 MiB in 1 segment in use, 0.0 MiB pooled for the next messages');
    expect([byteRate(999), byteRate(1500), byteRate(3.2e9)]).toEqual(['999 B/s', '1.5 kB/s', '3.2 GB/s']);
  });

  it('partitions by the groups typed, and refuses one group', () => {
    const { model, sent, root } = live();
    const input = root.querySelector('input.jp-mlsys-groups') as HTMLInputElement;
    input.value = 'a';
    click(root, 'button[data-action="partition"]');
    expect(sent).toHaveLength(0);
    expect(model.error).toContain('two or more groups');
    input.value = 'a | b,driver';
    click(root, 'button[data-action="partition"]');
    expect(sent[0]).toMatchObject({ action: 'partition', cluster: '7', groups: [['a'], ['b', 'driver']] });
  });

  it('lists the panels from the kernel\'s registry and Raft servers when there are some', () => {
    const model = new SidebarModel();
    model.connect({ send: () => undefined });
    model.receive({ type: 'state', protocol: PROTOCOL, state: state({
      raft: [{ id: 0, role: 'leader', term: 3, commit: 12 }, { id: 1, role: 'follower', term: 3, commit: 12 }] }) });
    const { root, handlers } = drawn(model);
    expect(root.querySelectorAll('.jp-mlsys-raft tr')).toHaveLength(3);
    expect(root.querySelector('.jp-mlsys-role-leader')!.textContent).toBe('0leader312');
    click(root, '.jp-mlsys-panels button');
    expect(handlers.openPanel).toHaveBeenCalledWith('%bloom');
  });

  it('says what it waits for', () => {
    const model = new SidebarModel();
    expect(drawn(model).root.textContent).toContain('Open a notebook or console');
    model.connect({ send: () => undefined });
    expect(drawn(model).root.textContent).toContain('Waiting for the kernel');
    expect(stateLabel('restarting')).toBe('dead, restarting');
    expect(environmentLine(null)).toContain('probing');
  });
});
