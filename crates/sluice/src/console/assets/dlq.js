// Sluice console: dead-letter topics: their records with the failure
// context (Kafka Connect, Spring, Sluice headers) and a replay with a
// filter, previewed as a dry run and applied after a confirmation.
"use strict";
(function () {
  const S = window.Sluice;
  const LOOKS_DLQ = /dlq|dlt|dead|error/i;

  function chooser(current) {
    const input = S.h("input", { type: "text", name: "dlq-topic", list: "dlq-topics", value: current || "" });
    const list = S.h("datalist", { id: "dlq-topics" });
    const form = S.h("form", { class: "inline" }, S.field("Dead-letter topic", input).wrap, list, S.h("button", { type: "submit" }, "Open"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (input.value.trim()) S.go("/ui/dlq/" + S.enc(input.value.trim()));
    });
    return { form, list };
  }

  S.pages.dlq = async function (topic) {
    const main = S.page(topic ? "Dead letters in " + topic : "Dead letters");
    const { form, list } = chooser(topic);
    main.appendChild(form);
    let topics = [];
    try {
      topics = (await S.api("/v1/topics")).map((t) => t.topic).sort();
    } catch (e) {
      main.appendChild(S.errorBox(e));
    }
    S.append(list, topics.map((t) => S.h("option", { value: t })));
    if (!topic) {
      const dlqs = topics.filter((t) => LOOKS_DLQ.test(t));
      main.appendChild(S.h("section", { "aria-labelledby": "dl-list" }, S.h("h2", { id: "dl-list" }, "Topics that look like dead-letter topics"),
        dlqs.length ? S.h("ul", {}, dlqs.map((t) => S.h("li", {}, S.link("/ui/dlq/" + S.enc(t), t)))) : S.h("p", {}, "None found; open any topic above.")));
      return;
    }
    const part = S.h("input", { type: "number", min: 0, name: "partition", value: 0 });
    const from = S.h("input", { type: "number", min: 0, name: "from", value: 0 });
    const limit = S.h("input", { type: "number", min: 1, max: 1000, name: "limit", value: 100 });
    const records = S.h("div");
    const browse = S.h("form", { class: "inline" }, S.field("Partition", part).wrap, S.field("From offset", from).wrap, S.field("Limit", limit).wrap, S.h("button", { type: "submit" }, "Show records"));
    async function show() {
      const q = new URLSearchParams({ partition: part.value || "0", from: from.value || "0", limit: limit.value || "100" });
      const page = await S.api("/v1/dlq/" + S.enc(topic) + "/records?" + q.toString());
      S.clear(records);
      records.appendChild(S.table(`Dead-letter records (end offset ${page.end_offset})`, [
        { label: "Offset", get: (r) => String(r.offset), num: true, field: "offset" },
        { label: "Time", get: (r) => S.fmtTime(r.timestamp) },
        { label: "Key", get: (r) => r.key === null ? "null" : r.key, field: "key" },
        { label: "Value", get: (r) => S.h("pre", {}, r.value_preview === null ? "null" : r.value_preview), field: "value" },
        { label: "Original", get: (r) => r.context.original_topic ? `${r.context.original_topic}[${r.context.original_partition ?? "?"}]@${r.context.original_offset ?? "?"}` : "–", field: "original" },
        { label: "Error", get: (r) => [r.context.exception_class || "", r.context.exception_message ? ": " + r.context.exception_message : ""].join("") || "–", field: "error" },
        { label: "Source", get: (r) => r.context.source },
        { label: "Replayed", get: (r) => (r.replayed ? "yes" : "no"), field: "replayed" },
      ], page.records, { empty: "No records there." }));
    }
    const run = (f, out) => f().catch((e) => { S.clear(out); out.appendChild(S.errorBox(e)); });
    browse.addEventListener("submit", (ev) => { ev.preventDefault(); run(show, records); });

    // Replay.
    const to = S.h("input", { type: "text", name: "to", placeholder: "each record's original topic" });
    const orig = S.h("input", { type: "text", name: "original_topic" });
    const err = S.h("input", { type: "text", name: "error_contains" });
    const rfrom = S.h("input", { type: "number", min: 0, name: "from_offset", value: 0 });
    const max = S.h("input", { type: "number", min: 1, name: "max_records", value: 1000 });
    const again = S.h("input", { type: "checkbox", name: "again" });
    const out = S.h("div", { class: "replay-out" });
    const replay = S.h("form", { class: "inline" },
      S.field("Replay to topic", to).wrap,
      S.field("Only from original topic", orig).wrap,
      S.field("Only errors containing", err).wrap,
      S.field("From offset", rfrom).wrap,
      S.field("At most", max).wrap,
      S.h("div", { class: "field check" }, again, S.h("label", { for: (again.id = "replay-again") }, "Replay records replayed before")),
      S.h("button", { type: "submit" }, "Preview replay"));
    function request(dry) {
      const req = { partition: Number(part.value || 0), from_offset: Number(rfrom.value || 0), max_records: Number(max.value || 1000), dry_run: dry, again: again.checked };
      if (to.value.trim()) req.to = to.value.trim();
      if (orig.value.trim()) req.original_topic = orig.value.trim();
      if (err.value.trim()) req.error_contains = err.value.trim();
      return req;
    }
    function rowsTable(res, caption) {
      return S.table(caption, [
        { label: "Offset", get: (r) => String(r.offset), num: true },
        { label: "Target", get: (r) => `${r.target_topic}[${r.target_partition}]` },
        { label: "Target offset", get: (r) => (r.target_offset === null ? "–" : String(r.target_offset)), num: true },
        { label: "Error", get: (r) => r.error || "–" },
      ], res.rows, { empty: "No record matches." });
    }
    replay.addEventListener("submit", (ev) => {
      ev.preventDefault();
      run(async () => {
        S.clear(out);
        const req = request(true);
        const res = await S.api("/v1/dlq/" + S.enc(topic) + "/replay", { method: "POST", json: req });
        const confirm = S.h("button", { type: "button", class: "danger", disabled: res.matched === 0 ? true : null }, "Confirm replay");
        const cancel = S.h("button", { type: "button" }, "Cancel");
        out.append(
          S.h("p", { role: "alert" }, `Dry run: scanned ${res.scanned}, ${res.matched} match, ${res.skipped_already_replayed} replayed before. Replay them?`),
          rowsTable(res, "Would replay"), confirm, cancel);
        cancel.addEventListener("click", () => S.clear(out));
        confirm.addEventListener("click", () => run(async () => {
          confirm.disabled = true;
          const done = await S.api("/v1/dlq/" + S.enc(topic) + "/replay", { method: "POST", json: Object.assign(req, { dry_run: false }) });
          S.clear(out);
          out.append(S.h("p", { class: "ok", role: "status", "data-field": "replayed-count" }, `Replayed ${done.replayed} record(s); ${done.failed} failed.`), rowsTable(done, "Replayed"));
          await show();
        }, out));
        confirm.focus();
      }, out);
    });
    main.append(
      S.h("section", { "aria-labelledby": "dl-rec" }, S.h("h2", { id: "dl-rec" }, "Records"), browse, records),
      S.h("section", { "aria-labelledby": "dl-rep" }, S.h("h2", { id: "dl-rep" }, "Replay"), replay, out)
    );
    run(show, records);
  };
})();
