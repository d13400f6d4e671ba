/**
 * The mlsys_ext sidebar: the clusters, actors and Raft servers of the kernel behind the
 * notebook or console in focus, pushed by the kernel over a comm (no polling, no server
 * route, no port), with buttons that act on them and open the labs' panels.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { SidebarModel, TARGET } from './model';
import { render } from './view';

const ICON = new LabIcon({
  name: 'mlsys-ext:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<circle cx="5" cy="6" r="3"/><circle cx="19" cy="6" r="3"/><circle cx="12" cy="18" r="3"/>' +
    '<path d="M6.5 8.5l4 7 1.5-.9-4-7zM17.5 8.5l-4 7-1.5-.9 4-7zM8 5.2h8v1.6H8z"/></g></svg>'
});

const LOADED = "'mlsys_ext' in get_ipython().extension_manager.loaded";

/** The part of a notebook or console the sidebar needs: its session, and a way to run a magic. */
interface ISource {
  title: string;
  kernel: Kernel.IKernelConnection | null;
  sessionContext: NotebookPanel['sessionContext'];
  runMagic(magic: string): void;
}

function sourceOf(widget: Widget | null): ISource | null {
  if (widget instanceof NotebookPanel) {
    return {
      title: widget.title.label,
      kernel: widget.sessionContext.session?.kernel ?? null,
      sessionContext: widget.sessionContext,
      runMagic: (magic: string) => {
        const notebook = widget.content;
        NotebookActions.insertBelow(notebook);
        const cell = notebook.activeCell;
        if (cell) {
          cell.model.sharedModel.setSource(magic);
          void NotebookActions.run(notebook, widget.sessionContext);
        }
      }
    };
  }
  const candidate = widget as unknown as {
    sessionContext?: NotebookPanel['sessionContext'];
    console?: { inject(code: string): Promise<void> };
    title: { label: string };
  };
  if (widget && candidate.sessionContext && candidate.console) {
    return {
      title: candidate.title.label,
      kernel: candidate.sessionContext.session?.kernel ?? null,
      sessionContext: candidate.sessionContext,
      runMagic: (magic: string) => void candidate.console!.inject(magic)
    };
  }
  return null;
}

class SidebarPanel extends Widget {
  readonly model = new SidebarModel();
  private _source: ISource | null = null;
  private _comm: Kernel.IComm | null = null;
  private _generation = 0; // bumps on every switch: late answers for an old kernel are dropped

  constructor() {
    super();
    this.id = 'mlsys-ext-sidebar';
    this.addClass('jp-mlsys-sidebar');
    this.title.icon = ICON;
    this.title.caption = 'mlsys_ext: clusters, actors and Raft of this kernel';
    this.model.onChange(() => this._draw());
    this._draw();
  }

  /** Show the kernel of ``widget`` (a notebook or console), or an empty state. */
  follow(widget: Widget | null): void {
    const source = sourceOf(widget);
    if (source === null || (this._source && source.sessionContext === this._source.sessionContext)) {
      if (source === null && this._source === null) {
        this.model.reset('no-kernel', '');
      }
      return;
    }
    this._source?.sessionContext.kernelChanged.disconnect(this._kernelChanged, this);
    this._source?.sessionContext.statusChanged.disconnect(this._statusChanged, this);
    this._source = source;
    source.sessionContext.kernelChanged.connect(this._kernelChanged, this);
    source.sessionContext.statusChanged.connect(this._statusChanged, this);
    void this._attach();
  }

  private _kernelChanged(): void {
    void this._attach();
  }

  private _statusChanged(_: unknown, status: Kernel.Status): void {
    if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      this._closeComm();
      this.model.reset('not-loaded');
    }
  }

  private async _attach(): Promise<void> {
    const generation = ++this._generation;
    this._closeComm();
    const source = this._source;
    if (source === null) {
      return;
    }
    await source.sessionContext.ready;
    const kernel = source.sessionContext.session?.kernel ?? null;
    if (generation !== this._generation) {
      return;
    }
    if (kernel === null) {
      this.model.reset('no-kernel', source.title);
      return;
    }
    this.model.reset('checking', source.title);
    // the kernel opens a comm here when %load_ext mlsys_ext runs, now or later
    kernel.registerCommTarget(TARGET, (comm: Kernel.IComm) => {
      if (generation === this._generation) {
        this._adopt(comm);
      }
    });
    if (await isLoaded(kernel)) {
      if (generation === this._generation && this._comm === null) {
        const comm = kernel.createComm(TARGET);
        this._adopt(comm);
        comm.open({ protocol: 1 });
      }
    } else if (generation === this._generation && this._comm === null) {
      this.model.reset('not-loaded', source.title);
    }
  }

  private _adopt(comm: Kernel.IComm): void {
    this._closeComm();
    this._comm = comm;
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => this.model.receive(msg.content.data);
    comm.onClose = () => {
      if (this._comm === comm) {
        this._comm = null;
        this.model.reset('not-loaded');
      }
    };
    this.model.connect({ send: data => comm.send(data as any) });
  }

  private _closeComm(): void {
    const comm = this._comm;
    this._comm = null;
    if (comm && !comm.isDisposed) {
      comm.onClose = () => undefined;
      comm.close();
    }
  }

  loadExtension(): void {
    const kernel = this._source?.sessionContext.session?.kernel;
    if (kernel) {
      kernel.requestExecute({ code: '%load_ext mlsys_ext', silent: true, store_history: false });
    }
  }

  private _draw(): void {
    render(this.node, this.model, {
      load: () => this.loadExtension(),
      openPanel: (magic: string) => this._source?.runMagic(magic)
    });
  }
}

async function isLoaded(kernel: Kernel.IKernelConnection): Promise<boolean> {
  const future = kernel.requestExecute({
    code: '',
    silent: true,
    store_history: false,
    user_expressions: { loaded: LOADED }
  });
  const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
  const content = reply.content as KernelMessage.IExecuteReply & {
    user_expressions?: Record<string, { data?: Record<string, string> }>;
  };
  return content.user_expressions?.loaded?.data?.['text/plain'] === 'True';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mlsys-ext-sidebar:plugin',
  description: 'The live view of the clusters, actors and Raft servers of the kernel in focus.',
  autoStart: true,
  requires: [ILabShell],
  activate: (app: JupyterFrontEnd, labShell: ILabShell) => {
    const panel = new SidebarPanel();
    labShell.add(panel, 'left', { rank: 900 });
    labShell.currentChanged.connect((_, change) => panel.follow(change.newValue));
    panel.follow(labShell.currentWidget);
  }
};

export default plugin;
