(() => {
  "use strict";
  const records = Array.from(document.querySelectorAll("article.rec"));
  const sections = Array.from(document.querySelectorAll("section.group"));
  const status = document.getElementById("f-status");
  const conf = document.getElementById("f-conf");
  const confValue = document.getElementById("f-conf-value");
  const shown = document.getElementById("shown");
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const s = params.get("status");
    status.value = s === "ok" || s === "failed" ? s : "all";
    const c = Number.parseFloat(params.get("conf"));
    conf.value = c >= 0 && c <= 1 ? String(c) : "1";
  }
  function apply() {
    const s = status.value;
    const t = Number.parseFloat(conf.value);
    let count = 0;
    for (const r of records) {
      const m = r.dataset.minconf;
      const visible = (s === "all" || r.dataset.status === s) &&
        (m === "" || Number.parseFloat(m) <= t);
      r.hidden = !visible;
      if (visible) count += 1;
    }
    for (const section of sections) {
      section.hidden = !section.querySelector("article.rec:not([hidden])");
    }
    confValue.textContent = t.toFixed(2);
    shown.textContent = count + " of " + records.length + " shown";
    document.body.dataset.shown = String(count);
    document.body.dataset.ready = "1";
  }
  function changed() {
    const hash = "#status=" + status.value + "&conf=" + Number.parseFloat(conf.value).toFixed(2);
    try { history.replaceState(null, "", hash); } catch (e) { /* file:// may refuse */ }
    apply();
  }
  function hot(event, on) {
    const w = event.target.closest && event.target.closest("[data-w]");
    const rec = w && w.closest("article.rec");
    if (!rec) return;
    for (const el of rec.querySelectorAll('[data-w="' + w.dataset.w + '"]')) {
      el.classList.toggle("hot", on);
    }
  }
  status.addEventListener("change", changed);
  conf.addEventListener("input", changed);
  window.addEventListener("hashchange", () => { readHash(); apply(); });
  document.addEventListener("mouseover", (e) => hot(e, true));
  document.addEventListener("mouseout", (e) => hot(e, false));
  readHash();
  apply();
})();
