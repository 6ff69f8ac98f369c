import type { Clock, ClockTimer } from '../core/clock.js';

interface FakeTimer extends ClockTimer {
  at: number;
  fn: () => void;
  cleared: boolean;
}

/** A clock that moves only when the test says so. */
export class FakeClock implements Clock {
  #now: number;
  #timers: FakeTimer[] = [];

  constructor(start = 1_800_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    const timer: FakeTimer = { at: this.#now + ms, fn, cleared: false, unref: () => timer };
    this.#timers.push(timer);
    return timer;
  }

  clearTimeout(timer: ClockTimer): void {
    (timer as FakeTimer).cleared = true;
  }

  /** Moves time forward, running due timers in order. */
  advance(ms: number): void {
    const until = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => !t.cleared && t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#now = due.at;
      due.cleared = true;
      due.fn();
    }
    this.#now = until;
    this.#timers = this.#timers.filter((t) => !t.cleared);
  }

  get pendingTimers(): number {
    return this.#timers.filter((t) => !t.cleared).length;
  }
}
