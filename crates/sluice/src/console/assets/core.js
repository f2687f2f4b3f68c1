// Sluice console: shared helpers (DOM building, JSON API calls, formatting,
// tables, polling). Every page script adds itself to window.Sluice.pages.
"use strict";
(function () {
  const S = (window.Sluice = { pages: {}, timers: [] });

  // Builds an element: h("a", {href: "/x", class: "c"}, "text", child, ...).
  // Text is always set as text, never parsed as HTML.
  S.h = function (tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    S.append(el, children);
    return el;
  };

  S.append = function (el, children) {
    for (const c of [children].flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  };

  S.clear = function (el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  };

  // Calls the JSON API on this origin (the browser adds the Basic
  // credentials it holds). Throws an Error with the API's message.
  S.api = async function (path, opts) {
    const o = Object.assign({ headers: {} }, opts || {});
    if (o.json !== undefined) {
      o.body = JSON.stringify(o.json);
      o.headers["Content-Type"] = "application/json";
      delete o.json;
    }
    o.headers["Accept"] = "application/json";
    const r = await fetch(path, o);
    const text = await r.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (e) {
      body = text;
    }
    if (!r.ok) {
      const msg = body && body.message ? body.message : r.status + " " + r.statusText;
      const err = new Error(msg);
      err.status = r.status;
      throw err;
    }
    return body;
  };

  S.enc = encodeURIComponent;

  S.fmtBytes = function (n) {
    if (n === null || n === undefined) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = Number(n);
    while (v >= 1024 && i < u.length - 1) {
      v /= 1024;
      i++;
    }
    return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + u[i];
  };

  S.fmtNum = function (n, digits) {
    if (n === null || n === undefined) return "–";
    return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 2 : digits });
  };

  S.fmtTime = function (ms) {
    if (ms === null || ms === undefined || ms < 0) return "–";
    try {
      return new Date(ms).toISOString();
    } catch (e) {
      return String(ms);
    }
  };

  // A table: columns are {label, get: row => node|text, field?, num?}.
  S.table = function (caption, columns, rows, opts) {
    const o = opts || {};
    const thead = S.h("thead", {}, S.h("tr", {}, columns.map((c) => S.h("th", { scope: "col" }, c.label))));
    const tbody = S.h(
      "tbody",
      {},
      rows.map((r) =>
        S.h(
          "tr",
          o.rowAttrs ? o.rowAttrs(r) : {},
          columns.map((c) => S.h("td", { "data-field": c.field, class: c.num ? "num" : null }, c.get(r)))
        )
      )
    );
    const t = S.h("table", { class: "grid" }, S.h("caption", {}, caption), thead, tbody);
    if (!rows.length) {
      tbody.appendChild(S.h("tr", {}, S.h("td", { colspan: columns.length, class: "empty" }, o.empty || "Nothing to show.")));
    }
    return S.h("div", { class: "table-wrap" }, t);
  };

  // A labelled form field; returns {wrap, input}.
  S.field = function (label, input, hint) {
    const id = input.id || "f-" + Math.random().toString(36).slice(2, 9);
    input.id = id;
    const wrap = S.h("div", { class: "field" }, S.h("label", { for: id }, label), input, hint ? S.h("small", {}, hint) : null);
    return { wrap, input };
  };

  S.status = function (msg, kind) {
    const el = document.getElementById("status");
    S.clear(el);
    el.className = "status" + (kind ? " " + kind : "");
    if (msg) el.appendChild(S.h("p", {}, msg));
  };

  // Runs fn now and every ms until the page changes.
  S.poll = function (fn, ms) {
    let stopped = false;
    const tick = async () => {
      if (stopped) return;
      try {
        await fn();
      } catch (e) {
        S.status("Refresh failed: " + e.message, "error");
      }
    };
    tick();
    const id = setInterval(tick, ms);
    S.timers.push(() => {
      stopped = true;
      clearInterval(id);
    });
  };

  S.stopTimers = function () {
    for (const stop of S.timers.splice(0)) stop();
  };

  // Starts a page: clears <main>, sets its heading and the title.
  S.page = function (title, ...intro) {
    const main = S.clear(document.getElementById("main"));
    document.title = title + " · Sluice console";
    main.appendChild(S.h("h1", {}, title));
    S.append(main, intro);
    return main;
  };

  S.link = function (href, text) {
    return S.h("a", { href }, text);
  };

  S.errorBox = function (e) {
    return S.h("p", { class: "error", role: "alert" }, e.message || String(e));
  };

  // A stat card for the overview.
  S.stat = function (label, value, field) {
    return S.h("div", { class: "stat" }, S.h("span", { class: "label" }, label), S.h("span", { class: "value", "data-field": field }, value));
  };

  S.go = function (path) {
    history.pushState(null, "", path);
    S.render();
  };
})();
