/**
 * Headroom for V8's old generation. With a small live heap (a replica's is 15-30 MB: its state
 * lives in slabs outside the heap), V8 sets the next full collection's limit a few tens of MB
 * above it and starts marking again almost at once: under load a replica ran a mark-compact
 * every 0.4-0.7 s (12-19 in 8 s at 32 clients) though only ~1 MB/s was promoted. A larger
 * initial heap (`node --initial-heap-size=128`) made that 1-2, but it cannot be set from inside
 * the process, nor through NODE_OPTIONS; the heap growing factor can, at any time. So: grow the
 * heap by at least `minHeadroomBytes` between full collections (factor at most 4, V8's own
 * ceiling), and leave V8's heuristics alone once the heap is large enough for that to be theirs.
 */
import v8 from 'node:v8';

/** Below this growing percentage V8's own heuristics are left in charge (flag value 0). */
const MIN_PERCENT = 50;
const MAX_PERCENT = 300;

/** The --heap-growing-percent that gives `minHeadroomBytes` above `usedBytes` (0: V8's own). */
export function growingPercentFor(usedBytes: number, minHeadroomBytes: number): number {
  const pct = Math.min(MAX_PERCENT, Math.round((100 * minHeadroomBytes) / Math.max(usedBytes, 1)));
  return pct < MIN_PERCENT ? 0 : pct;
}

/** Keep the headroom as the live heap changes (checked every `everyMs`); returns a stop function. */
export function keepHeapHeadroom(minHeadroomBytes = 64 << 20, everyMs = 1000): () => void {
  let current = -1;
  const adjust = () => {
    const pct = growingPercentFor(v8.getHeapStatistics().used_heap_size, minHeadroomBytes);
    if (pct === current) return;
    v8.setFlagsFromString(`--heap-growing-percent=${pct}`);
    current = pct;
  };
  adjust();
  const timer = setInterval(adjust, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
