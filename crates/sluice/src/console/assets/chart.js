// Sluice console: live line charts drawn as inline SVG (no library). A
// Series keeps the last points of a polled value; lineChart draws series
// sharing a time axis, each on its own scale when `dual` is set.
"use strict";
(function () {
  const S = window.Sluice;
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700"];

  S.Series = class {
    constructor(name, unit, max) {
      this.name = name;
      this.unit = unit || "";
      this.max = max || 150;
      this.points = [];
    }
    add(v) {
      if (typeof v !== "number" || !isFinite(v)) return;
      this.points.push([Date.now(), v]);
      if (this.points.length > this.max) this.points.shift();
    }
    // Replaces the points with `points` ([time ms, value] pairs, oldest
    // first), keeping the newest `max`.
    reset(points) {
      this.points = points.filter((p) => typeof p[1] === "number" && isFinite(p[1])).slice(-this.max);
    }
    last() {
      return this.points.length ? this.points[this.points.length - 1][1] : null;
    }
  };

  function svg(tag, attrs) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  // Draws `series` into `host` (replacing what was there).
  S.lineChart = function (host, title, series, opts) {
    const o = opts || {};
    const W = 640, H = 200, L = 56, R = o.dual ? 56 : 12, T = 12, B = 24;
    const all = series.flatMap((s) => s.points);
    const now = Date.now();
    const t0 = all.length ? Math.min(...all.map((p) => p[0])) : now - 60000;
    const t1 = Math.max(now, t0 + 1000);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
    const label = series.map((s) => `${s.name}: ${s.last() === null ? "no data" : S.fmtNum(s.last()) + " " + s.unit}`).join("; ");
    root.setAttribute("aria-label", `${title}. Latest ${label}`);
    const titleEl = svg("title");
    titleEl.textContent = title;
    root.appendChild(titleEl);
    root.appendChild(svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, class: "plot" }));
    const scales = [];
    const scaleOf = (pts) => {
      const max = Math.max(1, ...pts.map((p) => p[1]));
      return { min: 0, max: max * 1.1 };
    };
    if (o.dual) series.forEach((s) => scales.push(scaleOf(s.points)));
    else {
      const sc = scaleOf(all);
      series.forEach(() => scales.push(sc));
    }
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    series.forEach((s, i) => {
      const sc = scales[i];
      const y = (v) => T + (1 - (v - sc.min) / (sc.max - sc.min)) * (H - T - B);
      const color = COLORS[i % COLORS.length];
      if (s.points.length) {
        const d = s.points.map((p, j) => (j ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join(" ");
        root.appendChild(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
        const [lt, lv] = s.points[s.points.length - 1];
        root.appendChild(svg("circle", { cx: x(lt).toFixed(1), cy: y(lv).toFixed(1), r: 3.5, fill: color }));
      }
      // Axis labels: max and 0 on the left (first series) or right.
      const ax = i === 0 ? L - 4 : W - R + 4;
      const anchor = i === 0 ? "end" : "start";
      if (i === 0 || o.dual) {
        const top = svg("text", { x: ax, y: T + 10, "text-anchor": anchor, fill: color, class: "axis" });
        top.textContent = S.fmtNum(sc.max, 1) + (s.unit ? " " + s.unit : "");
        const bottom = svg("text", { x: ax, y: H - B, "text-anchor": anchor, fill: color, class: "axis" });
        bottom.textContent = "0";
        root.appendChild(top);
        root.appendChild(bottom);
      }
    });
    const span = svg("text", { x: L, y: H - 6, class: "axis" });
    span.textContent = `last ${Math.round((t1 - t0) / 1000)} s`;
    root.appendChild(span);
    const legend = S.h(
      "ul",
      { class: "legend" },
      series.map((s, i) =>
        S.h("li", {}, S.h("span", { class: "swatch swatch-" + (i % COLORS.length) }), `${s.name}: `, S.h("strong", {}, s.last() === null ? "–" : S.fmtNum(s.last()) + (s.unit ? " " + s.unit : "")))
      )
    );
    S.clear(host);
    host.appendChild(S.h("figure", { class: "chart-box" }, S.h("figcaption", {}, title), root, legend));
  };
})();
