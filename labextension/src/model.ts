/**
 * The sidebar's model: what the kernel last pushed, and the requests in flight.
 * No JupyterLab imports: the comm is anything with `send`, so tests drive it directly.
 */

export const TARGET = 'mlsys_ext.sidebar';
export const PROTOCOL = 1;

export interface IActor {
  name: string;
  class: string;
  worker: string;
  pid: number | null;
  state: string;
  restarts: number;
  queue: number;
  msgs_in: number;
  msgs_per_s: number;
}

export interface ILink {
  src: string;
  dst: string;
  msgs_per_s: number;
  bytes_per_s: number;
}

export interface ICluster {
  id: string;
  backend: string;
  workers: string[];
  current: boolean;
  actors: IActor[];
  links: ILink[]; // the busiest, by bytes per second
  shared_memory: string; // what the cluster holds, in words
}

export interface IRaftServer {
  id: number;
  role: string;
  term: number | null;
  commit: number | null;
}

export interface IPanel {
  label: string;
  magic: string;
}

export interface IState {
  environment: Record<string, unknown> | null;
  clusters: ICluster[];
  raft: IRaftServer[];
  panels: IPanel[];
}

/** Where the sidebar stands with the kernel in focus. */
export type Connection =
  | 'no-kernel' // no notebook or console in focus
  | 'checking' // asking the kernel whether the extension is loaded
  | 'not-loaded' // the kernel runs without mlsys_ext: offer to load it
  | 'connected'; // state arrives over the comm

export type ActorAction = 'kill' | 'restart' | 'pause' | 'resume';

export interface ISender {
  send(data: Record<string, unknown>): void;
}

type Listener = () => void;

export class SidebarModel {
  connection: Connection = 'no-kernel';
  source = ''; // the notebook or console in focus
  state: IState | null = null;
  error = '';
  private _sender: ISender | null = null;
  private _next = 1;
  private _pending = new Map<number, string>();
  private _listeners: Listener[] = [];

  onChange(listener: Listener): () => void {
    this._listeners.push(listener);
    return () => {
      this._listeners = this._listeners.filter(l => l !== listener);
    };
  }

  /** Focus moved, the kernel restarted, or its comm closed: forget what it showed. */
  reset(connection: Connection, source = this.source): void {
    this.connection = connection;
    this.source = source;
    this.state = null;
    this.error = '';
    this._sender = null;
    this._pending.clear();
    this._changed();
  }

  connect(sender: ISender): void {
    this._sender = sender;
    this.connection = 'connected';
    this.error = '';
    this._changed();
  }

  /** A message from the kernel's side of the comm. */
  receive(data: unknown): void {
    if (typeof data !== 'object' || data === null) {
      return;
    }
    const message = data as Record<string, unknown>;
    if (message.type === 'state') {
      if (message.protocol !== PROTOCOL) {
        this.error = `the kernel speaks sidebar protocol ${String(message.protocol)}, this sidebar ${PROTOCOL}: reinstall mlsys_ext`;
      } else {
        this.state = message.state as IState;
      }
    } else if (message.type === 'reply' || message.type === 'error') {
      const what = this._pending.get(message.request as number);
      this._pending.delete(message.request as number);
      this.error =
        message.type === 'error' ? `${what ?? 'request'}: ${String(message.message)}` : '';
    } else {
      return;
    }
    this._changed();
  }

  /** Ask the kernel to act; returns the request number, or -1 when not connected. */
  request(action: string, fields: Record<string, unknown> = {}): number {
    if (this._sender === null) {
      return -1;
    }
    const request = this._next++;
    this._pending.set(request, `${action} ${String(fields.name ?? '')}`.trim());
    this._sender.send({ type: 'action', request, action, ...fields });
    return request;
  }

  actorAction(cluster: ICluster, action: ActorAction, name: string): number {
    return this.request(action, { cluster: cluster.id, name });
  }

  /** "a,b | c" into [["a", "b"], ["c"]]; null when fewer than two non-empty groups. */
  static parseGroups(text: string): string[][] | null {
    const groups = text
      .split('|')
      .map(part => part.split(',').map(name => name.trim()).filter(name => name.length > 0));
    return groups.length >= 2 && groups.every(g => g.length > 0) ? groups : null;
  }

  /** A mistake caught before anything was sent, shown like the kernel's errors. */
  fail(message: string): void {
    this.error = message;
    this._changed();
  }

  get pending(): number {
    return this._pending.size;
  }

  private _changed(): void {
    for (const listener of this._listeners) {
      listener();
    }
  }
}
