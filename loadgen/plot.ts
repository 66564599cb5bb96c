/**
 * The seed's saturation experiment as a picture: throughput (x) against p90 latency (y), one
 * point per client count, as a self-contained SVG a person can open in any browser.
 */
import { LoadResult } from './run.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function sweepSvg(series: { name: string; points: LoadResult[] }[], title: string): string {
  const W = 760;
  const H = 480;
  const m = { l: 80, r: 30, t: 50, b: 60 };
  const all = series.flatMap((s) => s.points);
  const xMax = niceMax(Math.max(...all.map((p) => p.throughput)) * 1.05);
  const yMax = niceMax(Math.max(...all.map((p) => p.latencyUs.p90 / 1000)) * 1.1);
  const x = (v: number) => m.l + (v / xMax) * (W - m.l - m.r);
  const y = (v: number) => H - m.b - (v / yMax) * (H - m.t - m.b);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${esc(title)}</text>`);
  for (let i = 0; i <= 5; i++) {
    const xv = (xMax * i) / 5;
    const yv = (yMax * i) / 5;
    out.push(`<line x1="${x(xv)}" y1="${y(0)}" x2="${x(xv)}" y2="${y(yMax)}" stroke="#eee"/>`);
    out.push(`<line x1="${x(0)}" y1="${y(yv)}" x2="${x(xMax)}" y2="${y(yv)}" stroke="#eee"/>`);
    out.push(`<text x="${x(xv)}" y="${H - m.b + 18}" text-anchor="middle">${Math.round(xv)}</text>`);
    out.push(`<text x="${m.l - 8}" y="${y(yv) + 4}" text-anchor="end">${yv.toFixed(yMax < 5 ? 2 : 1)}</text>`);
  }
  out.push(`<line x1="${x(0)}" y1="${y(0)}" x2="${x(xMax)}" y2="${y(0)}" stroke="black"/>`);
  out.push(`<line x1="${x(0)}" y1="${y(0)}" x2="${x(0)}" y2="${y(yMax)}" stroke="black"/>`);
  out.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 18}" text-anchor="middle">throughput (answered requests/s)</text>`);
  out.push(`<text transform="translate(20 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">p90 latency (ms)</text>`);
  series.forEach((s, si) => {
    const c = colors[si % colors.length];
    const pts = s.points.slice().sort((a, b) => a.clients - b.clients);
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map((p) => `${x(p.throughput).toFixed(1)},${y(p.latencyUs.p90 / 1000).toFixed(1)}`).join(' ')}"/>`);
    for (const p of pts) {
      out.push(
        `<circle class="point" cx="${x(p.throughput).toFixed(1)}" cy="${y(p.latencyUs.p90 / 1000).toFixed(1)}" r="4" fill="${c}"><title>${p.clients} clients: ${p.throughput.toFixed(0)} ops/s, p90 ${(p.latencyUs.p90 / 1000).toFixed(2)} ms</title></circle>`,
      );
      out.push(`<text x="${(x(p.throughput) + 6).toFixed(1)}" y="${(y(p.latencyUs.p90 / 1000) - 6).toFixed(1)}" font-size="10" fill="${c}">${p.clients}</text>`);
    }
    out.push(`<rect x="${m.l + 12}" y="${m.t + 6 + si * 18}" width="12" height="12" fill="${c}"/><text x="${m.l + 30}" y="${m.t + 16 + si * 18}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
