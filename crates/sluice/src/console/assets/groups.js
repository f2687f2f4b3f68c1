// Sluice console: consumer groups (list; detail with members, lag per
// partition, lag seconds, Burrow status, a live lag chart) and the offset
// reset (a dry-run preview, then a confirmation that applies it). In a
// cluster, a group another broker coordinates shows its offsets and lag from
// the catalog and names that broker, which keeps its members and status.
"use strict";
(function () {
  const S = window.Sluice;

  S.pages.groups = function () {
    const main = S.page("Consumer groups");
    const host = S.h("div");
    main.appendChild(host);
    S.poll(async () => {
      const groups = await S.api("/v1/groups");
      // The groups falling behind first: by lag seconds, then by name.
      groups.sort((a, b) => (b.max_lag_seconds - a.max_lag_seconds) || a.group.localeCompare(b.group));
      S.clear(host);
      host.appendChild(
        S.table(
          "Consumer groups (" + groups.length + ")",
          [
            { label: "Group", get: (g) => S.link("/ui/groups/" + S.enc(g.group), g.group), field: "group" },
            { label: "State", get: (g) => g.state, field: "state" },
            { label: "Protocol", get: (g) => g.protocol_type || "–" },
            { label: "Members", get: (g) => String(g.members), num: true },
            { label: "Lag", get: (g) => String(g.total_lag), num: true, field: "total_lag" },
            { label: "Lag seconds", get: (g) => Number(g.max_lag_seconds).toFixed(3), num: true, field: "max_lag_seconds" },
            { label: "Status", get: (g) => (g.status ? statusTag(g.status) : "–"), field: "status" },
            { label: "Coordinator", get: (g) => coordinatorText(g.coordinator), field: "coordinator" },
          ],
          groups,
          { empty: "No consumer groups yet." }
        )
      );
    }, 5000);
  };

  function statusTag(s) {
    return s ? S.h("span", { class: "tag status-" + String(s).toLowerCase() }, s) : "–";
  }

  function coordinatorText(c) {
    if (!c) return "–";
    return "broker " + c.broker_id + (c.this ? " (this)" : " (" + c.host + ":" + c.port + ")");
  }

  function resetForm(group, onDone) {
    const section = S.h("section", { "aria-labelledby": "rs-h" }, S.h("h2", { id: "rs-h" }, "Reset offsets"));
    const topics = S.h("input", { type: "text", name: "topics", placeholder: "all topics of the group" });
    const to = S.h("select", { name: "to" }, ["earliest", "latest", "offset", "timestamp"].map((v) => S.h("option", { value: v }, v)));
    const value = S.h("input", { type: "text", name: "value", placeholder: "offset or ms since the epoch" });
    const preview = S.h("button", { type: "submit" }, "Preview reset");
    const out = S.h("div", { class: "reset-out" });
    const form = S.h(
      "form",
      { class: "inline" },
      S.field("Topics (comma-separated)", topics).wrap,
      S.field("Reset to", to).wrap,
      S.field("Offset or time", value, "for offset and timestamp").wrap,
      preview
    );
    function request(execute) {
      const req = { topics: topics.value.split(",").map((t) => t.trim()).filter(Boolean), to: to.value, execute };
      if (to.value === "offset" || to.value === "timestamp") {
        const v = value.value.trim();
        if (!/^\d+$/.test(v)) throw new Error("Give a whole number for " + to.value);
        req.value = Number(v);
      }
      return req;
    }
    function plan(rows, caption) {
      return S.table(caption, [
        { label: "Topic", get: (r) => r.topic },
        { label: "Partition", get: (r) => String(r.partition), num: true },
        { label: "Current offset", get: (r) => (r.current_offset === null ? "–" : String(r.current_offset)), num: true },
        { label: "New offset", get: (r) => String(r.new_offset), num: true, field: "new-offset" },
      ], rows);
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      S.clear(out);
      let req;
      try {
        req = request(false);
        const rows = await S.api("/v1/groups/" + S.enc(group) + "/reset-offsets", { method: "POST", json: req });
        const confirm = S.h("button", { type: "button", class: "danger" }, "Confirm reset");
        const cancel = S.h("button", { type: "button" }, "Cancel");
        out.append(
          plan(rows, "Preview (nothing changed yet)"),
          S.h("p", { role: "alert" }, `Apply this reset to ${rows.length} partition(s) of group ${group}?`),
          confirm,
          cancel
        );
        cancel.addEventListener("click", () => S.clear(out));
        confirm.addEventListener("click", async () => {
          confirm.disabled = true;
          try {
            const done = await S.api("/v1/groups/" + S.enc(group) + "/reset-offsets", { method: "POST", json: Object.assign({}, req, { execute: true }) });
            S.clear(out);
            out.append(S.h("p", { class: "ok", role: "status" }, `Offsets reset for ${done.length} partition(s).`), plan(done, "Applied"));
            onDone();
          } catch (e) {
            out.appendChild(S.errorBox(e));
          }
        });
        confirm.focus();
      } catch (e) {
        out.appendChild(S.errorBox(e));
      }
    });
    section.append(form, out);
    return section;
  }

  // The group's total lag at each recent commit (the windows Burrow keeps
  // per partition): at each commit time, the sum of every partition's
  // latest lag, so the trend shows from the first look.
  function seedFromCommits(series, partitions) {
    const times = [...new Set(partitions.flatMap((p) => (p.commits || []).map((c) => c[0])))].sort((a, b) => a - b);
    series.reset(
      times.map((t) => {
        let total = 0;
        for (const p of partitions) {
          const before = (p.commits || []).filter((c) => c[0] <= t);
          if (before.length) total += before[before.length - 1][1];
        }
        return [t, total];
      })
    );
  }

  S.pages.group = function (name) {
    const main = S.page("Group " + name, S.h("p", {}, S.link("/ui/groups", "All groups")));
    const stats = S.h("div", { class: "stats" });
    const elsewhere = S.h("div");
    const chart = S.h("div", { class: "chart-host" });
    const members = S.h("div");
    const parts = S.h("div");
    const lag = new S.Series("Total lag", "records");
    const age = new S.Series("Max lag", "s");
    main.append(
      S.h("section", { "aria-labelledby": "g-sum" }, S.h("h2", { id: "g-sum" }, "Summary"), stats, elsewhere),
      S.h("section", { "aria-labelledby": "g-lag" }, S.h("h2", { id: "g-lag" }, "Lag trend"), chart),
      S.h("section", { "aria-labelledby": "g-parts" }, S.h("h2", { id: "g-parts" }, "Partitions"), parts),
      S.h("section", { "aria-labelledby": "g-mem" }, S.h("h2", { id: "g-mem" }, "Members"), members),
      resetForm(name, () => refresh())
    );
    async function refresh() {
      const g = await S.api("/v1/groups/" + S.enc(name));
      S.clear(stats);
      S.append(stats, [
        S.stat("State", g.state, "state"),
        S.stat("Status", statusTag(g.status), "status"),
        S.stat("Total lag", S.fmtNum(g.total_lag, 0), "total-lag"),
        S.stat("Max lag seconds", S.fmtNum(g.max_lag_seconds, 3), "max-lag-seconds"),
        S.stat("Members", g.members.length, "members"),
        S.stat("Generation", g.generation, "generation"),
        S.stat("Coordinator", coordinatorText(g.coordinator), "coordinator"),
      ]);
      S.clear(elsewhere);
      if (g.coordinator && !g.coordinator.this) {
        elsewhere.appendChild(
          S.h(
            "p",
            { class: "note", "data-field": "coordinated-elsewhere" },
            "Broker " + g.coordinator.broker_id + " (" + g.coordinator.host + ":" + g.coordinator.port +
              ") coordinates this group: its members and status are there, and offsets are reset through it. " +
              "Offsets and lag here are read from the catalog."
          )
        );
      }
      if (!lag.points.length) seedFromCommits(lag, g.partitions);
      lag.add(g.total_lag);
      age.add(g.max_lag_seconds);
      S.lineChart(chart, "Lag (records) and event age (seconds)", [lag, age], { dual: true });
      S.clear(parts);
      parts.appendChild(
        S.table("Lag per partition", [
          { label: "Topic", get: (p) => S.link("/ui/topics/" + S.enc(p.topic), p.topic), field: "topic" },
          { label: "Partition", get: (p) => String(p.partition), num: true, field: "partition" },
          { label: "Committed", get: (p) => (p.current_offset === null ? "–" : String(p.current_offset)), num: true, field: "current-offset" },
          { label: "Log end", get: (p) => String(p.log_end_offset), num: true, field: "log-end" },
          { label: "Lag", get: (p) => (p.lag === null ? "–" : String(p.lag)), num: true, field: "lag" },
          { label: "Lag seconds", get: (p) => p.lag_seconds.toFixed(3), num: true, field: "lag-seconds" },
          { label: "Status", get: (p) => statusTag(p.status), field: "status" },
          { label: "Trend (records/s)", get: (p) => S.fmtNum(p.trend, 2), num: true },
          { label: "Consumer", get: (p) => p.consumer_id || "–" },
        ], g.partitions, {
          empty: "No committed offsets or assignments.",
          rowAttrs: (p) => ({ "data-topic": p.topic, "data-partition": p.partition }),
        })
      );
      S.clear(members);
      members.appendChild(
        S.table("Members", [
          { label: "Member", get: (m) => m.member_id },
          { label: "Instance", get: (m) => m.instance_id || "–" },
          { label: "Client", get: (m) => m.client_id },
          { label: "Host", get: (m) => m.host },
          { label: "Assignment", get: (m) => m.assignment.map((a) => a.topic + "-" + a.partition).join(", ") || "–" },
        ], g.members, { empty: "No active members." })
      );
    }
    S.poll(refresh, 2000);
  };
})();
