/* hft report: the runs table's sorting and filter, the loss curves of the runs on one
   chart, and each sweep's scatter and parallel-coordinates views, drawn as SVG from the
   JSON in #hft-data. No network: everything is in the page. (No double slashes in this
   file: the report's tests forbid anything that reads like a URL.) */
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("hft-data").textContent);
  const M = { l: 70, r: 18, t: 14, b: 46 };

  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;",
  })[c]);

  function fmt(v) {
    if (typeof v !== "number" || !isFinite(v)) return "-";
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  /* Round values over [lo, hi], about n of them. */
  function niceTicks(lo, hi, n) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const raw = span / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => s >= raw);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
    }
    return out;
  }

  /* How to place values: "cat" (evenly spaced categories) unless all are numbers; "log"
     for positive numbers spanning a factor of 20 or more. */
  function kindOf(values) {
    const present = values.filter((v) => v !== null && v !== undefined);
    if (!present.length || !present.every((v) => typeof v === "number")) return "cat";
    const lo = Math.min(...present), hi = Math.max(...present);
    return lo > 0 && hi / lo >= 20 ? "log" : "lin";
  }

  /* A scale from values to pixels p0..p1 with its ticks ([pixel, label] pairs). */
  function scale(values, kind, p0, p1) {
    if (kind === "cat") {
      const cats = [...new Set(values.filter((v) => v !== null && v !== undefined).map(String))];
      const at = (v) => p0 + (cats.indexOf(String(v)) + 0.5) / Math.max(cats.length, 1) * (p1 - p0);
      return { at, ticks: cats.map((c) => [at(c), c]) };
    }
    const f = kind === "log" ? Math.log10 : (x) => x;
    const nums = values.filter((v) => typeof v === "number" && isFinite(v) && (kind !== "log" || v > 0));
    let lo = nums.length ? Math.min(...nums.map(f)) : 0;
    let hi = nums.length ? Math.max(...nums.map(f)) : 1;
    if (hi === lo) {
      const pad = Math.abs(lo) * 0.5 || 0.5;
      lo -= pad;
      hi += pad;
    } else {
      const pad = 0.05 * (hi - lo);
      lo -= pad;
      hi += pad;
    }
    const at = (v) => p0 + (f(v) - lo) / (hi - lo) * (p1 - p0);
    let ticks;
    if (kind === "log") {
      ticks = [];
      for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) ticks.push([at(10 ** e), fmt(10 ** e)]);
      if (ticks.length < 2) ticks = [...new Set(nums)].map((v) => [at(v), fmt(v)]);
    } else {
      ticks = niceTicks(lo, hi, 6).map((v) => [at(v), fmt(v)]);
    }
    return { at, ticks };
  }

  /* An SVG chart of w x h: the frame, the ticks of x and y, the axis names, then body. */
  function frame(w, h, x, y, xName, yName, body, label) {
    const bottom = h - M.b;
    let s = `<svg viewBox="0 0 ${w} ${h}" style="max-width:${w}px" role="img" aria-label="${esc(label)}">`;
    s += `<rect x="${M.l}" y="${M.t}" width="${w - M.l - M.r}" height="${bottom - M.t}" fill="none" stroke="#aaa"/>`;
    for (const [px, text] of x.ticks) {
      s += `<line x1="${px}" x2="${px}" y1="${bottom}" y2="${bottom + 5}" stroke="#aaa"/>`;
      s += `<text x="${px}" y="${bottom + 18}" text-anchor="middle">${esc(text)}</text>`;
    }
    for (const [py, text] of y.ticks) {
      s += `<line x1="${M.l - 5}" x2="${M.l}" y1="${py}" y2="${py}" stroke="#aaa"/>`;
      s += `<text x="${M.l - 8}" y="${py + 4}" text-anchor="end">${esc(text)}</text>`;
    }
    s += `<text x="${(M.l + w - M.r) / 2}" y="${h - 8}" text-anchor="middle">${esc(xName)}</text>`;
    s += `<text transform="translate(14 ${(M.t + bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(yName)}</text>`;
    return s + body + "</svg>";
  }

  /* ---- the runs table: click a header to sort, type to filter ---- */
  function runsTable() {
    const table = document.querySelector("table.runs");
    if (!table) return;
    const heads = [...table.tHead.rows[0].cells];
    const value = (row, col, num) => {
      const cell = row.cells[col];
      if (cell.dataset.v !== undefined) return num ? parseFloat(cell.dataset.v) : cell.dataset.v;
      return num ? undefined : cell.textContent;
    };
    const sortBy = (col) => {
      const th = heads[col];
      const dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
      heads.forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", dir);
      const num = th.dataset.type === "num";
      const sign = dir === "ascending" ? 1 : -1;
      for (const body of table.tBodies) {
        const rows = [...body.querySelectorAll("tr.run")];
        rows.sort((a, b) => {
          const va = value(a, col, num), vb = value(b, col, num);
          /* Missing values last in either direction; ties keep the report's order. */
          if (va === undefined || vb === undefined) {
            return (va === undefined) - (vb === undefined) || a.dataset.run - b.dataset.run;
          }
          const c = num ? va - vb : String(va).localeCompare(String(vb));
          return sign * c || a.dataset.run - b.dataset.run;
        });
        rows.forEach((r) => body.appendChild(r));
      }
    };
    heads.forEach((th, col) => {
      th.tabIndex = 0;
      th.addEventListener("click", () => sortBy(col));
      th.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          sortBy(col);
        }
      });
    });
    const input = document.getElementById("run-filter");
    const count = document.getElementById("run-count");
    const rows = [...table.querySelectorAll("tr.run")];
    const filter = () => {
      const terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
      let shown = 0;
      for (const r of rows) {
        const hay = (r.textContent + " " + r.dataset.search).toLowerCase();
        r.hidden = !terms.every((t) => hay.includes(t));
        shown += r.hidden ? 0 : 1;
      }
      for (const body of table.tBodies) {
        const group = body.querySelector("tr.group");
        if (group) group.hidden = !body.querySelector("tr.run:not([hidden])");
      }
      count.textContent = terms.length ? `${shown} of ${rows.length} runs` : `${rows.length} runs`;
    };
    input.addEventListener("input", filter);
    filter();
  }

  /* ---- every run's loss curves on one chart ---- */
  function lossChart() {
    const holder = document.getElementById("loss-chart");
    if (!holder) return;
    const mode = document.getElementById("loss-curves").value;
    const log = document.getElementById("loss-log").checked;
    const shown = [...document.querySelectorAll("#loss-toggles input.run-toggle")]
      .filter((b) => b.checked)
      .map((b) => Number(b.dataset.run));
    const lines = [];
    for (const i of shown) {
      const r = data.runs[i];
      if (mode !== "train") lines.push({ run: i, pts: r.val, dash: false, what: "validation" });
      if (mode !== "val") lines.push({ run: i, pts: r.train, dash: mode === "both", what: "train" });
    }
    for (const l of lines) l.pts = l.pts.filter((p) => !log || p[1] > 0);
    const pts = lines.flatMap((l) => l.pts);
    if (!pts.length) {
      holder.innerHTML = "<p class=\"not-built\">No run selected.</p>";
      return;
    }
    const w = 760, h = 380;
    const x = scale(pts.map((p) => p[0]), "lin", M.l, w - M.r);
    x.ticks = x.ticks.filter(([, t]) => Number.isInteger(Number(t)));
    const y = scale(pts.map((p) => p[1]), log ? "log" : "lin", h - M.b, M.t);
    let body = "";
    for (const l of lines) {
      const r = data.runs[l.run];
      const d = l.pts.map((p, k) => `${k ? "L" : "M"}${x.at(p[0]).toFixed(1)},${y.at(p[1]).toFixed(1)}`).join("");
      const dash = l.dash ? " stroke-dasharray=\"6 4\"" : "";
      body += `<path class="run-line" data-run="${l.run}" d="${d}" fill="none" stroke="${r.color}" stroke-width="2"${dash}><title>${esc(r.name)} (${l.what})</title></path>`;
      if (l.pts.length === 1) {
        body += `<circle class="run-line" data-run="${l.run}" cx="${x.at(l.pts[0][0])}" cy="${y.at(l.pts[0][1])}" r="3" fill="${r.color}"/>`;
      }
    }
    holder.innerHTML = frame(w, h, x, y, "epoch", log ? "loss (log scale)" : "loss", body, "Loss curves of the selected runs");
  }

  /* ---- sweeps: each swept value against a metric, and parallel coordinates ---- */
  function sweep(section) {
    const s = data.sweeps[Number(section.dataset.sweep)];
    const mi = Number(section.querySelector("select.sweep-metric").value);
    const metric = data.metrics[mi];
    const y = (p) => data.runs[p.run].m[mi];
    const pts = s.points.filter((p) => typeof y(p) === "number");
    const name = (p) => data.runs[p.run].name;
    let scatters = "";
    s.keys.forEach((key, k) => {
      const have = pts.filter((p) => p.values[k] !== null && p.values[k] !== undefined);
      const vals = have.map((p) => p.values[k]);
      const w = 420, h = 300;
      const xs = scale(vals, kindOf(vals), M.l, w - M.r);
      const ys = scale(have.map(y), "lin", h - M.b, M.t);
      let body = "";
      for (const p of have) {
        const tip = `${name(p)}: ${key}=${p.values[k]}, ${metric.title} ${fmt(y(p))}`;
        body += `<circle class="sweep-point" data-run="${p.run}" cx="${xs.at(p.values[k]).toFixed(1)}" cy="${ys.at(y(p)).toFixed(1)}" r="5" fill="${data.runs[p.run].color}" fill-opacity="0.8"><title>${esc(tip)}</title></circle>`;
      }
      scatters += `<div class="small">${frame(w, h, xs, ys, key, metric.title, body, `${metric.title} against ${key}`)}</div>`;
    });
    section.querySelector(".sweep-scatters").innerHTML = pts.length ? scatters : "<p class=\"not-built\">No run of this sweep has this metric.</p>";
    section.querySelector(".sweep-parallel").innerHTML = pts.length ? parallel(s, pts, y, metric) : "";
  }

  /* One vertical axis per swept key and one for the metric; one line per run, darker the
     better its metric (when the metric has a better direction). */
  function parallel(s, pts, y, metric) {
    const names = [...s.keys, metric.title];
    const w = Math.max(480, 170 * names.length), h = 340;
    const top = 20, bottom = h - 50;
    const xAt = (i) => 60 + i * (w - 120) / Math.max(names.length - 1, 1);
    const columns = names.map((_, i) => i < s.keys.length ? pts.map((p) => p.values[i]) : pts.map(y));
    const scales = columns.map((vals) => scale(vals, kindOf(vals), bottom, top));
    const ms = pts.map(y);
    const lo = Math.min(...ms), hi = Math.max(...ms);
    const shade = (v) => {
      let t = hi > lo ? (v - lo) / (hi - lo) : 1;
      if (metric.higher === false) t = 1 - t;
      if (metric.higher === null) t = 0.6;
      const mix = (a, b) => Math.round(a + (b - a) * t);
      return `rgb(${mix(170, 8)},${mix(200, 48)},${mix(230, 107)})`;
    };
    let s2 = `<svg viewBox="0 0 ${w} ${h}" style="max-width:${w}px" role="img" aria-label="Parallel coordinates of ${esc(s.title)}">`;
    pts.forEach((p, j) => {
      const d = names.map((_, i) => {
        const v = columns[i][j];
        return v === null || v === undefined ? null : `${xAt(i).toFixed(1)},${scales[i].at(v).toFixed(1)}`;
      }).filter((q) => q !== null).map((q, k) => (k ? "L" : "M") + q).join("");
      const tip = `${data.runs[p.run].name}: ${metric.title} ${fmt(y(p))}`;
      s2 += `<path class="parallel-line" data-run="${p.run}" d="${d}" fill="none" stroke="${shade(y(p))}" stroke-width="2.5"><title>${esc(tip)}</title></path>`;
    });
    names.forEach((n, i) => {
      const x = xAt(i);
      s2 += `<line x1="${x}" x2="${x}" y1="${top}" y2="${bottom}" stroke="#555"/>`;
      for (const [py, text] of scales[i].ticks) {
        s2 += `<text x="${x + 6}" y="${py + 4}">${esc(text)}</text>`;
      }
      s2 += `<text x="${x}" y="${h - 24}" text-anchor="middle" font-weight="bold">${esc(n)}</text>`;
    });
    return s2 + "</svg>";
  }

  runsTable();
  lossChart();
  for (const el of document.querySelectorAll("#loss-toggles input, #loss-curves, #loss-log")) {
    el.addEventListener("change", lossChart);
  }
  for (const section of document.querySelectorAll("div.sweep")) {
    sweep(section);
    section.querySelector("select.sweep-metric").addEventListener("change", () => sweep(section));
  }
})();
