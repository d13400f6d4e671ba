import { IState } from '../src/model';

/** A state as the kernel pushes it: one local cluster of two actors, one paused. */
export function state(overrides: Partial<IState> = {}): IState {
  return {
    environment: { cpu_count: 2, numba_threading: 'workqueue', cuda: { usable: false, why: 'no GPU' },
      cupy: { usable: false, why: '' }, ray: { usable: true, why: '' } },
    clusters: [{ id: '7', backend: 'local', workers: ['w0', 'w1'], current: true, actors: [
      { name: 'a', class: 'Echo', worker: 'w0', pid: 101, state: 'alive', restarts: 0, queue: 0, msgs_in: 4,
        msgs_per_s: 2.5 },
      { name: 'b', class: 'Echo', worker: 'w1', pid: 102, state: 'paused', restarts: 1, queue: 3, msgs_in: 9,
        msgs_per_s: 0 }],
      links: [{ src: 'driver', dst: 'a', msgs_per_s: 12.5, bytes_per_s: 2_500_000 },
        { src: 'a', dst: 'b', msgs_per_s: 3, bytes_per_s: 120 }],
      shared_memory: 'shared memory held: 4.0 MiB in 1 segment in use, 0.0 MiB pooled for the next messages' }],
    raft: [],
    panels: [{ label: 'Bloom filter', magic: '%bloom' }],
    ...overrides
  };
}
