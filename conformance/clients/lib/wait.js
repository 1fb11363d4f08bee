// Bounded waiting helpers. Every wait rejects after a timeout (default 5 s)
// so a misbehaving server fails a test instead of hanging the run.

export const DEFAULT_TIMEOUT_MS = 5000;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Subscribes `cb` to `event` on a pusher-js dispatcher (channel, connection,
// user, watchlist: bind/unbind) or a Node EventEmitter (on/off). Returns an
// unsubscribe function.
function listen(target, event, cb) {
  if (typeof target.bind === 'function' && typeof target.unbind === 'function') {
    target.bind(event, cb);
    return () => target.unbind(event, cb);
  }
  if (typeof target.on === 'function') {
    target.on(event, cb);
    return () => (target.off ? target.off(event, cb) : target.removeListener(event, cb));
  }
  throw new TypeError(`cannot listen for ${event}: target has neither bind() nor on()`);
}

// A promise with an attached timeout; resolve/reject from outside.
export function deferred(label, timeoutMs = DEFAULT_TIMEOUT_MS) {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const timer = setTimeout(
    () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${label}`)),
    timeoutMs,
  );
  promise.then(
    () => clearTimeout(timer),
    () => clearTimeout(timer),
  );
  // Avoid unhandled-rejection noise when nobody awaits a timed-out deferred.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

// Waits for the first `event` on `target` whose data passes `filter`.
// Resolves with the event data (first callback argument).
export function waitFor(target, event, timeoutMs = DEFAULT_TIMEOUT_MS, filter = () => true) {
  const d = deferred(`event "${event}"`, timeoutMs);
  const off = listen(target, event, (data) => {
    let ok;
    try {
      ok = filter(data);
    } catch (err) {
      d.reject(err);
      return;
    }
    if (ok) d.resolve(data);
  });
  d.promise.then(off, off);
  return d.promise;
}

// Polls `predicate` until it returns a truthy value.
export async function waitUntil(predicate, label, timeoutMs = DEFAULT_TIMEOUT_MS, intervalMs = 25) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${label}`);
    await sleep(intervalMs);
  }
}

// Records every occurrence of `event` (or, with event '*', every event via
// pusher-js bind_global) as {event, data, metadata}.
export function record(target, event) {
  const items = [];
  const waiters = new Set();
  const check = () => {
    for (const w of [...waiters]) {
      const found = w.test();
      if (found !== undefined) {
        waiters.delete(w);
        w.d.resolve(found);
      }
    }
  };
  let off;
  if (event === '*') {
    const cb = (name, data) => {
      items.push({ event: name, data });
      check();
    };
    target.bind_global(cb);
    off = () => target.unbind_global(cb);
  } else {
    off = listen(target, event, (data, metadata) => {
      items.push({ event, data, metadata });
      check();
    });
  }
  const addWaiter = (label, test, timeoutMs) => {
    const d = deferred(label, timeoutMs);
    const w = { d, test };
    const found = test();
    if (found !== undefined) {
      d.resolve(found);
      return d.promise;
    }
    waiters.add(w);
    d.promise.catch(() => waiters.delete(w));
    return d.promise;
  };
  return {
    items,
    get count() {
      return items.length;
    },
    // Resolves with the first recorded item matching `pred` (past or future).
    waitMatch(pred, label = `matching "${event}"`, timeoutMs = DEFAULT_TIMEOUT_MS) {
      return addWaiter(label, () => items.find(pred), timeoutMs);
    },
    // Resolves with the items once at least `n` have been recorded.
    waitCount(n, timeoutMs = DEFAULT_TIMEOUT_MS) {
      return addWaiter(`${n} x "${event}" (have ${items.length})`, () => (items.length >= n ? items.slice() : undefined), timeoutMs);
    },
    stop() {
      off();
      for (const w of waiters) w.d.reject(new Error(`recorder for "${event}" stopped`));
      waiters.clear();
    },
  };
}
