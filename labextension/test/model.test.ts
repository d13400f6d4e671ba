import { describe, expect, it } from 'vitest';

import { PROTOCOL, SidebarModel } from '../src/model';
import { state } from './fixtures';

function connected(): { model: SidebarModel; sent: Record<string, unknown>[] } {
  const model = new SidebarModel();
  const sent: Record<string, unknown>[] = [];
  model.connect({ send: data => sent.push(data) });
  return { model, sent };
}

describe('SidebarModel', () => {
  it('keeps the last state the kernel pushed and tells its listeners', () => {
    const { model } = connected();
    let changes = 0;
    model.onChange(() => changes++);
    model.receive({ type: 'state', protocol: PROTOCOL, state: state() });
    model.receive({ type: 'state', protocol: PROTOCOL, state: state({ clusters: [] }) });
    expect(model.state?.clusters).toEqual([]);
    expect(changes).toBe(2);
    model.receive('garbage');
    model.receive({ type: 'unknown' });
    expect(changes).toBe(2);
  });

  it('refuses a state of another protocol with a message saying what to do', () => {
    const { model } = connected();
    model.receive({ type: 'state', protocol: PROTOCOL + 1, state: state() });
    expect(model.state).toBeNull();
    expect(model.error).toMatch(/protocol 2.*reinstall mlsys_ext/);
  });

  it('numbers each action and shows the kernel\'s error for it', () => {
    const { model, sent } = connected();
    model.receive({ type: 'state', protocol: PROTOCOL, state: state() });
    const cluster = model.state!.clusters[0];
    const first = model.actorAction(cluster, 'kill', 'a');
    const second = model.request('heal', { cluster: '7' });
    expect(sent).toEqual([
      { type: 'action', request: first, action: 'kill', cluster: '7', name: 'a' },
      { type: 'action', request: second, action: 'heal', cluster: '7' }
    ]);
    expect(model.pending).toBe(2);
    model.receive({ type: 'error', request: first, message: 'no actor named a' });
    expect(model.error).toBe('kill a: no actor named a');
    model.receive({ type: 'reply', request: second, ok: true });
    expect(model.error).toBe('');
    expect(model.pending).toBe(0);
  });

  it('sends nothing when no kernel is connected, and forgets everything on reset', () => {
    const model = new SidebarModel();
    expect(model.request('refresh')).toBe(-1);
    const { model: live } = connected();
    live.receive({ type: 'state', protocol: PROTOCOL, state: state() });
    live.reset('not-loaded', 'Untitled.ipynb');
    expect(live.state).toBeNull();
    expect(live.connection).toBe('not-loaded');
    expect(live.request('refresh')).toBe(-1);
  });

  it('parses partition groups', () => {
    expect(SidebarModel.parseGroups('a, b | c')).toEqual([['a', 'b'], ['c']]);
    expect(SidebarModel.parseGroups('a,b|c|d')).toEqual([['a', 'b'], ['c'], ['d']]);
    expect(SidebarModel.parseGroups('a,b')).toBeNull();
    expect(SidebarModel.parseGroups('a | ')).toBeNull();
  });
});
