// Sluice console: the overview page (brokers, throughput in and out,
// storage used, object counts), refreshed every two seconds. The throughput
// chart is the answering broker's recent history, as the API returns it.
"use strict";
(function () {
  const S = window.Sluice;

  S.pages.overview = function () {
    const main = S.page("Overview");
    const stats = S.h("section", { "aria-labelledby": "ov-stats" }, S.h("h2", { id: "ov-stats" }, "Cluster"));
    const statGrid = S.h("div", { class: "stats" });
    stats.appendChild(statGrid);
    const chartHost = S.h("div", { class: "chart-host" });
    const brokers = S.h("section", { "aria-labelledby": "ov-brokers" }, S.h("h2", { id: "ov-brokers" }, "Brokers"));
    const brokerTable = S.h("div");
    brokers.appendChild(brokerTable);
    main.append(stats, S.h("section", { "aria-labelledby": "ov-tp" }, S.h("h2", { id: "ov-tp" }, "Throughput"), chartHost), brokers);
    const bytesIn = new S.Series("Bytes in", "B/s");
    const bytesOut = new S.Series("Bytes out", "B/s");
    S.poll(async () => {
      const o = await S.api("/v1/overview");
      S.clear(statGrid);
      S.append(statGrid, [
        S.stat("Mode", o.cluster.mode, "mode"),
        S.stat("Brokers", o.cluster.brokers.length, "brokers"),
        S.stat("Topics", o.topics, "topics"),
        S.stat("Partitions", o.partitions, "partitions"),
        S.stat("Messages", S.fmtNum(o.messages, 0), "messages"),
        S.stat("Storage used", S.fmtBytes(o.storage_bytes), "storage"),
        S.stat("In", S.fmtBytes(o.bytes_in_per_sec) + "/s", "bytes-in"),
        S.stat("Out", S.fmtBytes(o.bytes_out_per_sec) + "/s", "bytes-out"),
        S.stat("Records in", S.fmtNum(o.records_in_per_sec) + "/s", "records-in"),
        S.stat("Objects", S.fmtNum(o.objects, 0), "objects"),
        S.stat("Objects written", S.fmtNum(o.objects_written, 0), "objects-written"),
        S.stat("Consumer groups", o.groups, "groups"),
        S.stat("Schema subjects", o.subjects, "subjects"),
      ]);
      if (o.history && o.history.length) {
        bytesIn.reset(o.history.map((p) => [p.time_ms, p.bytes_in_per_sec]));
        bytesOut.reset(o.history.map((p) => [p.time_ms, p.bytes_out_per_sec]));
      } else {
        bytesIn.add(o.bytes_in_per_sec);
        bytesOut.add(o.bytes_out_per_sec);
      }
      const through = o.cluster.mode === "cluster" ? ` through broker ${o.cluster.broker_id}` : "";
      S.lineChart(chartHost, "Throughput in and out" + through, [bytesIn, bytesOut]);
      S.clear(brokerTable);
      brokerTable.appendChild(
        S.table(
          "Live brokers of cluster " + o.cluster.cluster_id,
          [
            { label: "Id", get: (b) => String(b.broker_id) + (b.this ? " (this)" : ""), field: "broker-id" },
            { label: "Address", get: (b) => b.host + ":" + b.port },
            { label: "Zone", get: (b) => b.rack || "–" },
            { label: "Lease age", get: (b) => S.fmtNum(b.lease_age_ms / 1000, 1) + " s", num: true },
            { label: "Groups", get: (b) => String(b.groups.length), num: true },
            { label: "Jobs", get: (b) => b.jobs.join(", ") || "–" },
          ],
          o.cluster.brokers
        )
      );
    }, 2000);
  };
})();
