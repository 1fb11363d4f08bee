// Bounded waits: every wait fails after a timeout instead of hanging the run.
export const DEFAULT_TIMEOUT_MS = 5000;

export function waitForEvent(target, event, timeoutMs = DEFAULT_TIMEOUT_MS, filter = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      target.unbind(event, cb);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}"`));
    }, timeoutMs);
    function cb(data) {
      if (!filter(data)) return;
      clearTimeout(timer);
      target.unbind(event, cb);
      resolve(data);
    }
    target.bind(event, cb);
  });
}

export async function waitUntil(predicate, label, timeoutMs = DEFAULT_TIMEOUT_MS, intervalMs = 25) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${label}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
