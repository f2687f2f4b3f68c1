// Sluice console: registry subjects, their versions, a line diff between
// two versions and a compatibility check of pasted schema text (all via
// the Confluent REST paths).
"use strict";
(function () {
  const S = window.Sluice;
  const SR = { Accept: "application/vnd.schemaregistry.v1+json" };

  S.pages.schemas = async function () {
    const main = S.page("Schemas");
    const subjects = (await S.api("/subjects")).sort();
    main.appendChild(S.table("Subjects (" + subjects.length + ")", [
      { label: "Subject", get: (s) => S.link("/ui/schemas/" + S.enc(s), s), field: "subject" },
    ], subjects, { empty: "No subjects registered." }));
  };

  // Pretty text of a schema, for reading and diffing.
  function pretty(text) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch (e) {
      return text;
    }
  }

  // Line diff (longest common subsequence): [[op, line]], op in " ", "-", "+".
  S.diffLines = function (a, b) {
    const x = a.split("\n"), y = b.split("\n");
    if (x.length * y.length > 4e6) return [["-", a], ["+", b]];
    const n = x.length, m = y.length;
    const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--)
      for (let j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    const out = [];
    let i = 0, j = 0;
    while (i < n && j < m) {
      if (x[i] === y[j]) { out.push([" ", x[i]]); i++; j++; }
      else if (L[i + 1][j] >= L[i][j + 1]) out.push(["-", x[i++]]);
      else out.push(["+", y[j++]]);
    }
    while (i < n) out.push(["-", x[i++]]);
    while (j < m) out.push(["+", y[j++]]);
    return out;
  };

  S.pages.subject = async function (subject) {
    const main = S.page("Subject " + subject, S.h("p", {}, S.link("/ui/schemas", "All subjects")));
    const base = "/subjects/" + S.enc(subject);
    const versions = await S.api(base + "/versions", { headers: SR });
    let level = "–";
    try {
      level = (await S.api("/config/" + S.enc(subject) + "?defaultToGlobal=true")).compatibilityLevel;
    } catch (e) { /* no config: shown as – */ }
    const latest = await S.api(base + "/versions/latest");
    main.appendChild(S.h("div", { class: "stats" },
      S.stat("Versions", versions.length, "versions"),
      S.stat("Latest", latest.version, "latest"),
      S.stat("Type", latest.schemaType || "AVRO", "type"),
      S.stat("Compatibility", level, "compatibility")));

    // One version.
    const pick = S.h("select", { name: "version" }, versions.map((v) => S.h("option", { value: v, selected: v === latest.version }, "v" + v)));
    const shown = S.h("div");
    async function showVersion() {
      const v = await S.api(base + "/versions/" + pick.value);
      S.clear(shown);
      shown.append(S.h("p", {}, `Version ${v.version}, id ${v.id}`), S.h("pre", { class: "schema", "data-field": "schema" }, pretty(v.schema)));
    }
    pick.addEventListener("change", () => showVersion().catch((e) => shown.appendChild(S.errorBox(e))));

    // Diff.
    const a = S.h("select", { name: "from" }, versions.map((v, i) => S.h("option", { value: v, selected: i === Math.max(0, versions.length - 2) }, "v" + v)));
    const b = S.h("select", { name: "to" }, versions.map((v) => S.h("option", { value: v, selected: v === latest.version }, "v" + v)));
    const diffOut = S.h("div");
    const diffForm = S.h("form", { class: "inline" }, S.field("From version", a).wrap, S.field("To version", b).wrap, S.h("button", { type: "submit" }, "Show diff"));
    diffForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      S.clear(diffOut);
      try {
        const [va, vb] = await Promise.all([S.api(base + "/versions/" + a.value), S.api(base + "/versions/" + b.value)]);
        const lines = S.diffLines(pretty(va.schema), pretty(vb.schema));
        diffOut.appendChild(S.h("pre", { class: "diff", "aria-label": `Diff from v${a.value} to v${b.value}` },
          lines.map(([op, l]) => S.h("span", { class: op === "+" ? "add" : op === "-" ? "del" : "same" }, op + " " + l + "\n"))));
      } catch (e) {
        diffOut.appendChild(S.errorBox(e));
      }
    });

    // Compatibility check.
    const text = S.h("textarea", { name: "schema", rows: 8, spellcheck: "false" });
    text.value = pretty(latest.schema);
    const type = S.h("select", { name: "schemaType" }, ["AVRO", "JSON", "PROTOBUF"].map((t) => S.h("option", { value: t, selected: t === (latest.schemaType || "AVRO") }, t)));
    const compatOut = S.h("div", { role: "status" });
    const compatForm = S.h("form", {}, S.field("Schema text", text).wrap, S.field("Schema type", type).wrap, S.h("button", { type: "submit" }, "Check compatibility"));
    compatForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      S.clear(compatOut);
      try {
        const body = { schema: text.value };
        if (type.value !== "AVRO") body.schemaType = type.value;
        const r = await S.api("/compatibility/subjects/" + S.enc(subject) + "/versions/latest?verbose=true", { method: "POST", json: body });
        S.append(compatOut, [
          S.h("p", { class: r.is_compatible ? "ok" : "error", "data-field": "compatible" }, r.is_compatible ? `Compatible (${level}).` : `Not compatible (${level}).`),
          r.messages && r.messages.length ? S.h("ul", { "data-field": "compat-messages" }, r.messages.map((m) => S.h("li", {}, m))) : null,
        ]);
      } catch (e) {
        compatOut.appendChild(S.errorBox(e));
      }
    });

    main.append(
      S.h("section", { "aria-labelledby": "s-v" }, S.h("h2", { id: "s-v" }, "Versions"), S.h("form", { class: "inline" }, S.field("Version", pick).wrap), shown),
      S.h("section", { "aria-labelledby": "s-d" }, S.h("h2", { id: "s-d" }, "Diff between versions"), diffForm, diffOut),
      S.h("section", { "aria-labelledby": "s-c" }, S.h("h2", { id: "s-c" }, "Check compatibility"), compatForm, compatOut)
    );
    await showVersion();
  };
})();
