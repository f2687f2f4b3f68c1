// Sluice console: the client-side router. Paths under /ui/ pick a page;
// links inside the app change the page without reloading it.
"use strict";
(function () {
  const S = window.Sluice;

  // [pattern, nav section, page function name]
  const ROUTES = [
    [/^\/ui\/?$/, "overview", (m) => S.pages.overview()],
    [/^\/ui\/overview\/?$/, "overview", (m) => S.pages.overview()],
    [/^\/ui\/topics\/?$/, "topics", (m) => S.pages.topics()],
    [/^\/ui\/topics\/([^/]+)\/?$/, "topics", (m) => S.pages.topic(decodeURIComponent(m[1]))],
    [/^\/ui\/groups\/?$/, "groups", (m) => S.pages.groups()],
    [/^\/ui\/groups\/([^/]+)\/?$/, "groups", (m) => S.pages.group(decodeURIComponent(m[1]))],
    [/^\/ui\/dlq\/?$/, "dlq", (m) => S.pages.dlq(null)],
    [/^\/ui\/dlq\/([^/]+)\/?$/, "dlq", (m) => S.pages.dlq(decodeURIComponent(m[1]))],
    [/^\/ui\/schemas\/?$/, "schemas", (m) => S.pages.schemas()],
    [/^\/ui\/schemas\/([^/]+)\/?$/, "schemas", (m) => S.pages.subject(decodeURIComponent(m[1]))],
  ];

  S.render = function () {
    S.stopTimers();
    S.status("");
    const path = location.pathname;
    for (const [re, nav, page] of ROUTES) {
      const m = path.match(re);
      if (!m) continue;
      for (const a of document.querySelectorAll("nav a[data-nav]")) {
        if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
        else a.removeAttribute("aria-current");
      }
      Promise.resolve()
        .then(() => page(m))
        .catch((e) => {
          document.getElementById("main").appendChild(S.errorBox(e));
        });
      return;
    }
    S.page("Not found", S.h("p", {}, "No console page at " + path + ". "), S.link("/ui/", "Back to the overview"));
  };

  document.addEventListener("click", (ev) => {
    const a = ev.target.closest ? ev.target.closest("a[href]") : null;
    if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/ui/") || url.pathname.startsWith("/ui/assets/")) return;
    ev.preventDefault();
    S.go(url.pathname + url.search);
    document.getElementById("main").focus();
  });

  window.addEventListener("popstate", () => S.render());
  S.render();
})();
