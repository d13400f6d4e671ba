/**
 * The sidebar's DOM, drawn from the model alone: `render` empties `root` and draws it
 * again, so what is shown is always the last state the kernel pushed.
 */
import { ActorAction, ICluster, SidebarModel } from './model';

export interface IHandlers {
  load(): void; // run %load_ext mlsys_ext in the kernel in focus
  openPanel(magic: string): void; // put the panel's magic in a cell and run it
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text) {
    node.textContent = text;
  }
  return node;
}

function button(label: string, title: string, onClick: () => void, action = ''): HTMLButtonElement {
  const node = element('button', 'jp-mlsys-button', label);
  node.title = title;
  if (action) {
    node.dataset.action = action;
  }
  node.addEventListener('click', onClick);
  return node;
}

/** How an actor's state reads: "restarting" is a dead actor on its way back. */
export function stateLabel(state: string): string {
  return state === 'restarting' ? 'dead, restarting' : state;
}

export function render(root: HTMLElement, model: SidebarModel, handlers: IHandlers): void {
  root.replaceChildren();
  root.appendChild(element('h2', 'jp-mlsys-title', 'mlsys_ext'));
  if (model.source) {
    root.appendChild(element('div', 'jp-mlsys-source', model.source));
  }
  if (model.connection === 'no-kernel') {
    root.appendChild(element('p', 'jp-mlsys-empty', 'Open a notebook or console to see its clusters.'));
    return;
  }
  if (model.connection === 'checking') {
    root.appendChild(element('p', 'jp-mlsys-empty', 'Asking the kernel ...'));
    return;
  }
  if (model.connection === 'not-loaded') {
    const empty = element('div', 'jp-mlsys-empty');
    empty.appendChild(element('p', '', 'This kernel has not loaded mlsys_ext.'));
    empty.appendChild(button('Load mlsys_ext', 'run %load_ext mlsys_ext in this kernel', handlers.load, 'load'));
    root.appendChild(empty);
    return;
  }
  if (model.error) {
    root.appendChild(element('p', 'jp-mlsys-error', model.error));
  }
  const state = model.state;
  if (state === null) {
    root.appendChild(element('p', 'jp-mlsys-empty', 'Waiting for the kernel ...'));
    return;
  }
  root.appendChild(element('div', 'jp-mlsys-environment', environmentLine(state.environment)));
  const clusters = element('section', 'jp-mlsys-clusters');
  clusters.appendChild(element('h3', '', 'Clusters'));
  if (state.clusters.length === 0) {
    clusters.appendChild(element('p', 'jp-mlsys-empty', 'No cluster in this kernel: %cluster start 2'));
  }
  for (const cluster of state.clusters) {
    clusters.appendChild(renderCluster(model, cluster));
  }
  root.appendChild(clusters);
  if (state.raft.length > 0) {
    root.appendChild(renderRaft(model));
  }
  const panels = element('section', 'jp-mlsys-panels');
  panels.appendChild(element('h3', '', 'Lab panels'));
  for (const panel of state.panels) {
    panels.appendChild(button(panel.label, `run ${panel.magic} in a new cell`, () => handlers.openPanel(panel.magic)));
  }
  root.appendChild(panels);
}

export function environmentLine(environment: Record<string, unknown> | null): string {
  if (environment === null) {
    return 'probing this machine ...';
  }
  const flag = (key: string): string => {
    const value = environment[key] as { usable: boolean } | undefined;
    return value && value.usable ? 'yes' : 'no';
  };
  return (
    `${String(environment.cpu_count)} CPUs · numba ${String(environment.numba_threading)}` +
    ` · CUDA ${flag('cuda')} · CuPy ${flag('cupy')} · Ray ${flag('ray')}`
  );
}

function renderCluster(model: SidebarModel, cluster: ICluster): HTMLElement {
  const node = element('div', 'jp-mlsys-cluster');
  node.dataset.cluster = cluster.id;
  const header = element('div', 'jp-mlsys-cluster-header');
  header.appendChild(
    element(
      'span',
      '',
      `${cluster.backend} · ${cluster.workers.length} workers${cluster.current ? ' · %cluster' : ''}`
    )
  );
  header.appendChild(button('stop', 'stop this cluster and its workers', () => model.request('stop', { cluster: cluster.id }), 'stop'));
  node.appendChild(header);
  const table = element('table', 'jp-mlsys-actors');
  const head = element('tr', '');
  for (const [name, title] of [['actor', ''], ['pid', ''], ['state', ''], ['↻', 'restarts'], ['queue', 'messages waiting'],
    ['msg/s', 'messages received per second']]) {
    const cell = element('th', '', name);
    cell.title = title;
    head.appendChild(cell);
  }
  table.appendChild(head);
  for (const actor of cluster.actors) {
    // two rows per actor, so the table fits a narrow sidebar: its figures, then its buttons
    const row = element('tr', `jp-mlsys-actor jp-mlsys-state-${actor.state}`);
    row.dataset.actor = actor.name;
    const cells = [actor.name, actor.pid === null ? '' : String(actor.pid), stateLabel(actor.state),
      String(actor.restarts), String(actor.queue), actor.msgs_per_s.toFixed(1)];
    for (const text of cells) {
      row.appendChild(element('td', '', text));
    }
    table.appendChild(row);
    const actionsRow = element('tr', 'jp-mlsys-actor-actions');
    actionsRow.dataset.actor = actor.name;
    const actions = element('td', '');
    actions.colSpan = cells.length;
    const act = (action: ActorAction, title: string) =>
      button(action, title, () => model.actorAction(cluster, action, actor.name), action);
    actions.appendChild(act('kill', 'SIGKILL its worker; it comes back if it has restarts left'));
    actions.appendChild(act('restart', 'start its worker again'));
    actions.appendChild(
      actor.state === 'paused' ? act('resume', 'SIGCONT its worker') : act('pause', 'SIGSTOP its worker')
    );
    actionsRow.appendChild(actions);
    table.appendChild(actionsRow);
  }
  node.appendChild(table);
  if (cluster.actors.length === 0) {
    node.appendChild(element('p', 'jp-mlsys-empty', 'No actors yet: cluster.spawn(Class, ...)'));
  }
  node.appendChild(renderLinks(cluster));
  const network = element('div', 'jp-mlsys-network');
  const groups = element('input', 'jp-mlsys-groups');
  groups.placeholder = 'a,b | c';
  groups.title = 'groups of actors or workers, separated by |';
  network.appendChild(groups);
  network.appendChild(
    button('partition', 'cut the network between the groups', () => {
      const parsed = SidebarModel.parseGroups(groups.value);
      if (parsed === null) {
        model.fail('partition needs two or more groups, e.g. a,b | c');
        return;
      }
      model.request('partition', { cluster: cluster.id, groups: parsed });
    }, 'partition')
  );
  network.appendChild(button('heal', 'remove every cut', () => model.request('heal', { cluster: cluster.id }), 'heal'));
  node.appendChild(network);
  return node;
}

/** Decimal units, as link speeds are written: 12.3 MB/s. */
export function byteRate(bytesPerSecond: number): string {
  for (const [unit, size] of [['GB/s', 1e9], ['MB/s', 1e6], ['kB/s', 1e3]] as const) {
    if (bytesPerSecond >= size) {
      return `${(bytesPerSecond / size).toFixed(1)} ${unit}`;
    }
  }
  return `${bytesPerSecond.toFixed(0)} B/s`;
}

function renderLinks(cluster: ICluster): HTMLElement {
  const node = element('div', 'jp-mlsys-links');
  const table = element('table', '');
  const head = element('tr', '');
  for (const name of ['link', 'msg/s', 'bytes/s']) {
    head.appendChild(element('th', '', name));
  }
  table.appendChild(head);
  for (const link of cluster.links) {
    const row = element('tr', 'jp-mlsys-link');
    for (const text of [`${link.src} → ${link.dst}`, link.msgs_per_s.toFixed(1), byteRate(link.bytes_per_s)]) {
      row.appendChild(element('td', '', text));
    }
    table.appendChild(row);
  }
  if (cluster.links.length > 0) {  // the links that carried messages lately
    node.appendChild(table);
  }
  node.appendChild(element('p', 'jp-mlsys-shared-memory', cluster.shared_memory));
  return node;
}

function renderRaft(model: SidebarModel): HTMLElement {
  const section = element('section', 'jp-mlsys-raft');
  section.appendChild(element('h3', '', 'Raft'));
  const table = element('table', '');
  const head = element('tr', '');
  for (const name of ['server', 'role', 'term', 'commit']) {
    head.appendChild(element('th', '', name));
  }
  table.appendChild(head);
  for (const server of model.state?.raft ?? []) {
    const row = element('tr', `jp-mlsys-role-${server.role}`);
    for (const text of [String(server.id), server.role, String(server.term ?? ''), String(server.commit ?? '')]) {
      row.appendChild(element('td', '', text));
    }
    table.appendChild(row);
  }
  section.appendChild(table);
  return section;
}
