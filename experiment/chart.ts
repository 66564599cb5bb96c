/**
 * The experiments' figures: a line chart of named series (x, y points) as a self-contained SVG.
 * Each series is a <g class="series" data-name="..."> so a reader (or a test) can find it.
 */
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function label(v: number, max: number): string {
  if (max >= 100) return String(Math.round(v));
  if (max >= 10) return v.toFixed(1);
  return v.toFixed(max >= 1 ? 2 : 3);
}

export interface Series {
  name: string;
  points: { x: number; y: number }[];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** A line across the plot (e.g. the seed's figure) with its label. */
  reference?: { y: number; label: string };
  /** y axis from this value instead of 0 (ratios near 1). */
  yMin?: number;
  subtitle?: string;
}

export function lineChart(series: Series[], o: ChartOptions): string {
  const W = 800;
  const H = 500;
  const m = { l: 80, r: 190, t: o.subtitle ? 64 : 50, b: 60 };
  const all = series.flatMap((s) => s.points);
  const xMax = niceMax(Math.max(0, ...all.map((p) => p.x)) * 1.05);
  const yMin = o.yMin ?? 0;
  const yMax = niceMax(Math.max(yMin + 1e-9, ...all.map((p) => p.y), o.reference?.y ?? 0) * 1.08 - yMin) + yMin;
  const x = (v: number) => m.l + (v / xMax) * (W - m.l - m.r);
  const y = (v: number) => H - m.b - ((v - yMin) / (yMax - yMin)) * (H - m.t - m.b);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f'];
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<title>${esc(o.title)}</title>`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${(m.l + W - m.r) / 2}" y="24" text-anchor="middle" font-size="15">${esc(o.title)}</text>`);
  if (o.subtitle) out.push(`<text x="${(m.l + W - m.r) / 2}" y="44" text-anchor="middle" fill="#555">${esc(o.subtitle)}</text>`);
  for (let i = 0; i <= 5; i++) {
    const xv = (xMax * i) / 5;
    const yv = yMin + ((yMax - yMin) * i) / 5;
    out.push(`<line x1="${x(xv)}" y1="${y(yMin)}" x2="${x(xv)}" y2="${y(yMax)}" stroke="#eee"/>`);
    out.push(`<line x1="${x(0)}" y1="${y(yv)}" x2="${x(xMax)}" y2="${y(yv)}" stroke="#eee"/>`);
    out.push(`<text x="${x(xv)}" y="${H - m.b + 18}" text-anchor="middle">${label(xv, xMax)}</text>`);
    out.push(`<text x="${m.l - 8}" y="${y(yv) + 4}" text-anchor="end">${label(yv, yMax)}</text>`);
  }
  out.push(`<line x1="${x(0)}" y1="${y(yMin)}" x2="${x(xMax)}" y2="${y(yMin)}" stroke="black"/>`);
  out.push(`<line x1="${x(0)}" y1="${y(yMin)}" x2="${x(0)}" y2="${y(yMax)}" stroke="black"/>`);
  out.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 18}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  out.push(`<text transform="translate(20 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  if (o.reference) {
    out.push(`<g class="reference"><line x1="${x(0)}" y1="${y(o.reference.y)}" x2="${x(xMax)}" y2="${y(o.reference.y)}" stroke="#999" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${x(xMax) - 4}" y="${y(o.reference.y) - 6}" text-anchor="end" fill="#666">${esc(o.reference.label)}</text></g>`);
  }
  series.forEach((s, i) => {
    const c = colors[i % colors.length];
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    out.push(`<g class="series" data-name="${esc(s.name)}">`);
    if (pts.length > 1) out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map((p) => `${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) out.push(`<circle cx="${x(p.x).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="4" fill="${c}"><title>${esc(`${s.name}: ${p.x}, ${p.y}`)}</title></circle>`);
    const ly = m.t + 10 + i * 20;
    out.push(`<rect x="${W - m.r + 16}" y="${ly - 9}" width="12" height="12" fill="${c}"/><text x="${W - m.r + 34}" y="${ly + 1}">${esc(s.name)}</text>`);
    out.push('</g>');
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
