//! `--html`: one self-contained page (no CDN, no external file) with throughput and
//! latency percentiles over time and the latency distribution, drawn as SVG by a
//! few lines of inline script from the report's own data.

use serde_json::json;

use crate::report::{decode, Report};

/// Renders a report as a standalone HTML page.
///
/// ```
/// # use std::collections::BTreeMap;
/// # use std::time::Duration;
/// # use strata_bench::{recorder::Counts, report::{Report, Resources}};
/// let r = Report::new("demo", "engine".into(), BTreeMap::new(), &Counts::default(),
///                     vec![], Duration::from_secs(1), Resources::default());
/// let page = strata_bench::html::render(&r);
/// assert!(page.starts_with("<!doctype html>") && !page.contains("https://"));
/// ```
pub fn render(r: &Report) -> String {
    // The latency distribution as a percentile spectrum, from the full histograms.
    let spectrum = |enc: &str| -> Vec<(f64, f64)> {
        let Ok(h) = decode(enc) else {
            return Vec::new();
        };
        if h.is_empty() {
            return Vec::new();
        }
        [
            0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999, 1.0,
        ]
        .iter()
        .map(|&q| (q * 100.0, h.value_at_quantile(q) as f64 / 1000.0))
        .collect()
    };
    let data = json!({
        "name": r.name,
        "target": r.target,
        "timeline": r.timeline,
        "spectrum": {
            "intended": spectrum(&r.histograms.corrected),
            "sent": spectrum(&r.histograms.sent),
        },
    });
    // `</` inside a script element would end it.
    let data = data.to_string().replace("</", "<\\/");
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let l = &r.latency;
    let summary = format!(
        "<tr><th>operations</th><td>{ops}</td><th>ops/s</th><td>{rps:.0}</td></tr>\
         <tr><th>error rate</th><td>{er:.3}%</td><th>hit rate</th><td>{hit}</td></tr>\
         <tr><th>p50</th><td>{p50:.3} ms</td><th>p99</th><td>{p99:.3} ms</td></tr>\
         <tr><th>p99.9</th><td>{p999:.3} ms</td><th>max</th><td>{max:.3} ms</td></tr>",
        ops = r.ops,
        rps = r.rps,
        er = r.error_rate * 100.0,
        hit = r
            .hit_rate
            .map_or("n/a".to_owned(), |h| format!("{:.2}%", h * 100.0)),
        p50 = l.p50,
        p99 = l.p99,
        p999 = l.p999,
        max = l.max,
    );
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>strata load test: {title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 4px 12px; text-align: left; }}
th {{ color: #666; font-weight: normal; }}
svg {{ background: #fafafa; border: 1px solid #ddd; }}
.axis {{ stroke: #999; }} .grid {{ stroke: #eee; }} text {{ font-size: 11px; fill: #555; }}
.series {{ fill: none; stroke-width: 1.5; }}
</style></head>
<body>
<h1>strata load test: {title}</h1>
<p>{target}</p>
<table>{summary}</table>
<h2>Throughput (operations/s)</h2><svg id="throughput" width="900" height="260"></svg>
<h2>Latency over time (ms)</h2><svg id="latency" width="900" height="260"></svg>
<h2>Latency distribution (ms by percentile)</h2><svg id="distribution" width="900" height="260"></svg>
<script type="application/json" id="data">{data}</script>
<script>
"use strict";
window.__errors = [];
window.addEventListener("error", e => {{ window.__errors.push(String(e.message)); document.body.dataset.errors = window.__errors.join("; "); }});
const NS = "http://www.w3.org/2000/svg";
function el(name, attrs, parent) {{
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  parent.appendChild(e);
  return e;
}}
function nice(max) {{
  if (!(max > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}}
function chart(id, series, xlabel, xfmt) {{
  const svg = document.getElementById(id);
  const W = +svg.getAttribute("width"), H = +svg.getAttribute("height");
  const L = 60, R = 150, T = 12, B = 36;
  const pts = series.flatMap(s => s.points);
  if (pts.length === 0) {{ el("text", {{x: W / 2 - 40, y: H / 2}}, svg).textContent = "no data"; return 0; }}
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
  const y1 = nice(Math.max(...ys));
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const Y = y => H - B - y / y1 * (H - T - B);
  for (let i = 0; i <= 4; i++) {{
    const y = y1 * i / 4;
    el("line", {{class: "grid", x1: L, x2: W - R, y1: Y(y), y2: Y(y)}}, svg);
    el("text", {{x: 4, y: Y(y) + 4}}, svg).textContent = +y.toPrecision(3);
  }}
  el("line", {{class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B}}, svg);
  el("line", {{class: "axis", x1: L, x2: L, y1: T, y2: H - B}}, svg);
  for (let i = 0; i <= 5; i++) {{
    const x = x0 + (x1 - x0) * i / 5;
    el("text", {{x: X(x) - 10, y: H - B + 14}}, svg).textContent = xfmt(x);
  }}
  el("text", {{x: (W - R) / 2, y: H - 4}}, svg).textContent = xlabel;
  let drawn = 0;
  series.forEach((s, i) => {{
    if (s.points.length === 0) return;
    const d = s.points.map((p, j) => (j ? "L" : "M") + X(p[0]).toFixed(1) + " " + Y(p[1]).toFixed(1)).join(" ");
    el("path", {{class: "series", d: d, stroke: s.color}}, svg);
    el("rect", {{x: W - R + 12, y: T + i * 18, width: 10, height: 10, fill: s.color}}, svg);
    el("text", {{x: W - R + 28, y: T + i * 18 + 9}}, svg).textContent = s.name;
    drawn++;
  }});
  return drawn;
}}
const data = JSON.parse(document.getElementById("data").textContent);
const tl = data.timeline;
const at = f => tl.map(p => [p.t, f(p)]);
let drawn = 0;
drawn += chart("throughput", [{{name: "ops/s", color: "#1f77b4", points: at(p => p.rps)}}], "seconds", x => String(+x.toFixed(1)));
drawn += chart("latency", [
  {{name: "p50", color: "#2ca02c", points: at(p => p.p50_ms)}},
  {{name: "p90", color: "#ff7f0e", points: at(p => p.p90_ms)}},
  {{name: "p99", color: "#d62728", points: at(p => p.p99_ms)}},
  {{name: "p99 intended", color: "#9467bd", points: at(p => p.corrected_p99_ms)}},
], "seconds", x => String(+x.toFixed(1)));
// Percentiles on a log scale of 1/(1-q): 90%, 99%, 99.9% … evenly spaced.
const lg = q => Math.log10(1 / Math.max(1e-6, 1 - q / 100));
const spec = s => s.map(([q, v]) => [lg(Math.min(q, 99.9999)), v]);
drawn += chart("distribution", [
  {{name: "intended start", color: "#9467bd", points: spec(data.spectrum.intended)}},
  {{name: "sent", color: "#1f77b4", points: spec(data.spectrum.sent)}},
], "percentile", x => (100 - 100 / Math.pow(10, x)).toPrecision(4) + "%");
document.body.dataset.rendered = String(drawn);
</script>
</body></html>
"##,
        title = esc(&r.name),
        target = esc(&r.target),
        summary = summary,
        data = data,
    )
}
