// Sluice console: the topic list, a topic's detail (partitions, offsets,
// size, retention, configs, its schema and governance policy) and the
// message browser (records decoded through the registry, by offset or by
// time).
"use strict";
(function () {
  const S = window.Sluice;
  const POLICY_KEY = /schema|governance|traceparent|identity|^sluice\.(key|value)|^confluent\./;
  const RETENTION_KEYS = ["cleanup.policy", "retention.ms", "retention.bytes", "segment.ms", "max.message.bytes"];

  S.pages.topics = function () {
    const main = S.page("Topics");
    const host = S.h("div");
    main.appendChild(host);
    S.poll(async () => {
      const topics = await S.api("/v1/topics");
      topics.sort((a, b) => a.topic.localeCompare(b.topic));
      S.clear(host);
      host.appendChild(
        S.table(
          "Topics (" + topics.length + ")",
          [
            { label: "Topic", get: (t) => S.link("/ui/topics/" + S.enc(t.topic), t.topic), field: "topic" },
            { label: "Partitions", get: (t) => String(t.partitions), num: true },
            { label: "Messages", get: (t) => S.fmtNum(t.messages, 0), num: true, field: "messages" },
            { label: "Size", get: (t) => S.fmtBytes(t.size_bytes), num: true },
            { label: "In", get: (t) => S.fmtBytes(t.bytes_in_per_sec) + "/s", num: true },
            { label: "Out", get: (t) => S.fmtBytes(t.bytes_out_per_sec) + "/s", num: true },
          ],
          topics,
          { empty: "No topics yet." }
        )
      );
    }, 5000);
  };

  function kvTable(caption, entries, empty) {
    return S.table(caption, [
      { label: "Name", get: (e) => S.h("code", {}, e[0]) },
      { label: "Value", get: (e) => e[1], field: "config-value" },
    ], entries, { empty });
  }

  // Renders a decoded key or value.
  function decoded(d) {
    if (!d || d.format === "null") return S.h("span", { class: "muted" }, "null");
    const text = d.format === "text" || d.format === "base64" ? String(d.value) : JSON.stringify(d.value, null, 1);
    const tag = d.format + (d.schema_id !== undefined ? " schema " + d.schema_id : "");
    return S.h(
      "div",
      { class: "decoded" },
      S.h("span", { class: "tag", title: d.error || "" }, tag),
      d.error ? S.h("span", { class: "error" }, " " + d.error) : null,
      S.h("pre", {}, text)
    );
  }

  function parseTime(text) {
    const t = text.trim();
    if (/^\d+$/.test(t)) return Number(t);
    const ms = Date.parse(t);
    if (isNaN(ms)) throw new Error("Timestamp: give milliseconds since the epoch or an ISO date, not " + JSON.stringify(t));
    return ms;
  }

  function messageBrowser(topic, partitions) {
    const section = S.h("section", { "aria-labelledby": "mb-h" }, S.h("h2", { id: "mb-h" }, "Messages"));
    const part = S.h("select", { name: "partition" }, partitions.map((p) => S.h("option", { value: p.partition }, String(p.partition))));
    const mode = S.h("select", { name: "mode" }, S.h("option", { value: "offset" }, "From an offset"), S.h("option", { value: "timestamp" }, "From a time"));
    const offset = S.h("input", { type: "number", min: 0, name: "offset", value: partitions.length ? partitions[0].log_start_offset : 0 });
    const ts = S.h("input", { type: "text", name: "timestamp", placeholder: "2026-01-01T00:00:00Z or ms" });
    const limit = S.h("input", { type: "number", min: 1, max: 500, name: "limit", value: 50 });
    const load = S.h("button", { type: "submit" }, "Show messages");
    const next = S.h("button", { type: "button", disabled: true }, "Next page");
    const out = S.h("div", { class: "messages" });
    let nextOffset = null;
    const form = S.h(
      "form",
      { class: "inline" },
      S.field("Partition", part).wrap,
      S.field("Search", mode).wrap,
      S.field("Offset", offset).wrap,
      S.field("Time", ts, "ISO date or ms since the epoch").wrap,
      S.field("Limit", limit).wrap,
      load,
      next
    );
    async function show(fromOffset) {
      const q = new URLSearchParams({ partition: part.value, limit: limit.value || "50" });
      if (fromOffset !== undefined) q.set("offset", fromOffset);
      else if (mode.value === "timestamp") q.set("timestamp", parseTime(ts.value));
      else q.set("offset", offset.value || "0");
      const page = await S.api("/v1/topics/" + S.enc(topic) + "/messages?" + q.toString());
      nextOffset = page.next_offset;
      next.disabled = page.next_offset >= page.end_offset;
      S.clear(out);
      out.appendChild(
        S.h("p", { class: "muted" }, `Partition ${page.partition}: offsets ${page.log_start_offset}–${page.end_offset}; showing ${page.records.length} from ${page.start_offset}` + (page.truncated ? " (cut at the page's byte bound)" : ""))
      );
      out.appendChild(
        S.table(
          "Messages of " + topic,
          [
            { label: "Offset", get: (r) => String(r.offset), num: true, field: "offset" },
            { label: "Time", get: (r) => S.fmtTime(r.timestamp), field: "timestamp" },
            { label: "Key", get: (r) => decoded(r.key), field: "key" },
            { label: "Value", get: (r) => decoded(r.value), field: "value" },
            {
              label: "Headers",
              field: "headers",
              get: (r) => S.h("ul", { class: "headers" }, r.headers.map((h) => S.h("li", {}, S.h("code", {}, h.key), " = ", h.value === null ? "null" : h.value + (h.base64 ? " (base64)" : "")))),
            },
            { label: "Trace id", get: (r) => (r.trace_id ? S.h("code", {}, r.trace_id) : "–"), field: "trace-id" },
          ],
          page.records,
          { empty: "No messages there." }
        )
      );
    }
    const run = (f) => f().catch((e) => { S.clear(out); out.appendChild(S.errorBox(e)); });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      run(() => show());
    });
    next.addEventListener("click", () => run(() => show(nextOffset)));
    section.append(form, out);
    return section;
  }

  S.pages.topic = async function (name) {
    const main = S.page("Topic " + name, S.h("p", {}, S.link("/ui/topics", "All topics")));
    let t;
    try {
      t = await S.api("/v1/topics/" + S.enc(name));
    } catch (e) {
      main.appendChild(S.errorBox(e));
      return;
    }
    const summary = S.h("div", { class: "stats" },
      S.stat("Partitions", t.partitions, "partitions"),
      S.stat("Messages", S.fmtNum(t.messages, 0), "messages"),
      S.stat("Size", S.fmtBytes(t.size_bytes), "size"),
      S.stat("In", S.fmtBytes(t.bytes_in_per_sec) + "/s", "bytes-in"),
      S.stat("Out", S.fmtBytes(t.bytes_out_per_sec) + "/s", "bytes-out"));
    const parts = S.table("Partitions", [
      { label: "Partition", get: (p) => String(p.partition), num: true },
      { label: "Log start", get: (p) => String(p.log_start_offset), num: true, field: "log-start" },
      { label: "Log end", get: (p) => String(p.log_end_offset), num: true, field: "log-end" },
      { label: "Records", get: (p) => S.fmtNum(p.log_end_offset - p.log_start_offset, 0), num: true },
      { label: "Size", get: (p) => S.fmtBytes(p.size_bytes), num: true },
    ], t.partition_details);
    const configs = Object.entries(t.configs || {});
    const retention = RETENTION_KEYS.map((k) => [k, t.configs[k] !== undefined ? t.configs[k] : "broker default"]);
    const policy = configs.filter(([k]) => POLICY_KEY.test(k));
    const subjects = S.h("div");
    main.append(
      S.h("section", { "aria-labelledby": "t-sum" }, S.h("h2", { id: "t-sum" }, "Summary"), summary, parts),
      S.h("section", { "aria-labelledby": "t-ret" }, S.h("h2", { id: "t-ret" }, "Retention"), kvTable("Retention settings", retention)),
      S.h("section", { "aria-labelledby": "t-pol" }, S.h("h2", { id: "t-pol" }, "Schema and governance"), kvTable("Policy bound to " + name, policy, "No schema or governance policy bound to this topic."), subjects),
      S.h("section", { "aria-labelledby": "t-cfg" }, S.h("h2", { id: "t-cfg" }, "Configs"), kvTable("Topic configs", configs, "No configs set: broker defaults apply.")),
      messageBrowser(name, t.partition_details)
    );
    try {
      const all = await S.api("/subjects");
      const mine = new Set([name + "-key", name + "-value"]);
      for (const [, v] of policy) if (all.includes(v)) mine.add(v);
      const found = all.filter((s) => mine.has(s));
      S.append(subjects, S.h("p", {}, "Registry subjects: ", found.length ? found.map((s, i) => [i ? ", " : "", S.link("/ui/schemas/" + S.enc(s), s)]) : "none"));
    } catch (e) {
      subjects.appendChild(S.h("p", { class: "muted" }, "Registry subjects unavailable: " + e.message));
    }
  };
})();
