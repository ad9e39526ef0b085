// SPDX-License-Identifier: Apache-2.0
// medig cohort browser (inlined into report.html). Every string from the data is inserted as
// text (textContent), never parsed as markup, so a file name cannot become an element.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("medig-data").textContent);
  var META = D.meta || {};
  var GAP = META.overlay_gap || 0;
  var ROWS = D.rows.map(function (a, i) {
    var o = { i: i };
    for (var k = 0; k < D.columns.length; k++) o[D.columns[k]] = a[k];
    o.flags = o.flags || [];
    o.find = String(o.path).toLowerCase() + "\n" + String(o.predicted || "").toLowerCase() +
      "\n" + String(o.study || "").toLowerCase();
    return o;
  });
  var HAS = {};
  D.columns.forEach(function (c) { HAS[c] = true; });

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function num(v) { return typeof v === "number" && isFinite(v) ? v : null; }
  function pct(v) {
    v = num(v);
    if (v === null) return "";
    var p = v * 100;
    return (p >= 10 ? p.toFixed(1) : p.toFixed(2)) + "%";
  }
  function f2(v) { v = num(v); return v === null ? "" : v.toFixed(2); }
  function f4(v) { v = num(v); return v === null ? "" : (Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(3) : v.toPrecision(4)); }
  var SHORT_FLAG = { "baseline-dependent": "baseline", "not-faithful": "unfaithful" };
  var QUALITY = { gradeable: "gradeable", ungradeable: "ungradeable", not_fundus: "not fundus" };
  function imageUrl(rel) {
    // Only a relative path inside the audit folder (the results' own ``overlay`` column).
    if (typeof rel !== "string" || !rel || /^[a-z][a-z0-9+.-]*:/i.test(rel) || rel[0] === "/" ||
        rel.split("/").indexOf("..") >= 0) return null;
    return rel.split("/").map(encodeURIComponent).join("/");
  }

  // ------------------------------------------------------------------ tabs
  var tabs = document.querySelectorAll("#tabs button");
  function showTab(name) {
    tabs.forEach(function (b) { b.classList.toggle("on", b.dataset.tab === name); });
    document.querySelectorAll("section.tab").forEach(function (s) {
      s.hidden = s.dataset.tab !== name;
    });
    if (name === "images") renderAll();
  }
  tabs.forEach(function (b) { b.addEventListener("click", function () { showTab(b.dataset.tab); }); });

  // ------------------------------------------------------------------ columns
  var COLS = [
    { key: "thumb", label: "", width: "44px" },
    { key: "path", label: "Image", width: "minmax(110px, 1fr)", cls: "t" },
    { key: "predicted", label: "Prediction", width: "minmax(72px, 110px)", cls: "t" },
    { key: "probability", label: "p", width: "44px", num: true, fmt: f2, title: "probability of the prediction" },
    { key: "target", label: "Explained", width: "minmax(64px, 100px)", cls: "t" },
    { key: "relative_error", label: "Error", width: "74px", num: true, fmt: pct, title: "relative completeness error" }
  ];
  if (HAS.map_error) COLS.push({ key: "map_error", label: "Map err.", width: "70px", num: true, fmt: f4, title: "map error" });
  COLS.push(
    { key: "flags", label: "Flags", width: "minmax(76px, 120px)", cls: "t" },
    { key: "quality", label: "Quality", width: "92px" },
    { key: "laterality", label: "Eye", width: "38px" },
    { key: "study", label: "Study", width: "minmax(40px, 70px)" }
  );
  document.body.style.setProperty("--cols", COLS.map(function (c) { return c.width; }).join(" "));

  var thead = document.getElementById("thead");
  var tbody = document.getElementById("tbody");
  var sortKey = "path", sortDir = 1;
  COLS.forEach(function (c) {
    if (c.key === "thumb") { thead.appendChild(el("div")); return; }
    var b = el("button", null, c.label);
    b.type = "button";
    b.dataset.key = c.key;
    b.title = "Sort by " + (c.title || c.label);
    b.setAttribute("role", "columnheader");
    b.addEventListener("click", function () {
      if (sortKey === c.key) sortDir = -sortDir; else { sortKey = c.key; sortDir = 1; }
      applySort();
    });
    thead.appendChild(b);
  });

  function sortValue(r, key) {
    if (key === "flags") return r.flags.length ? r.flags.join(",") : null;
    if (key === "predicted" && r.status !== "ok") return null;
    var v = r[key];
    return v === undefined ? null : v;
  }
  function compare(a, b) {
    var x = sortValue(a, sortKey), y = sortValue(b, sortKey);
    if (x === null && y === null) return a.i - b.i;
    if (x === null) return 1;   // empty cells last, in either direction
    if (y === null) return -1;
    var c = typeof x === "number" && typeof y === "number" ? x - y
      : String(x).localeCompare(String(y), undefined, { numeric: true });
    return c ? c * sortDir : a.i - b.i;
  }

  // ------------------------------------------------------------------ rows
  var elOf = new Array(ROWS.length);
  function cellText(r, c) {
    if (c.key === "predicted") return r.status === "ok" ? r.predicted : (r.status === "error" ? "not read" : r.status);
    if (c.key === "quality") return r.quality ? (QUALITY[r.quality] || r.quality) : "";
    if (c.fmt) return c.fmt(r[c.key]);
    var v = r[c.key];
    return v === null || v === undefined ? "" : v;
  }
  function makeRow(r) {
    var row = el("div", "row" + (r.status === "error" ? " err" : ""));
    row.setAttribute("role", "row");
    row.dataset.path = r.path;
    row.dataset.i = r.i;
    COLS.forEach(function (c) {
      var cell = el("div", c.num ? "num" : c.cls);
      cell.setAttribute("role", "cell");
      if (c.key === "thumb") {
        var url = imageUrl(r.overlay);
        if (url) {
          var box = el("div", "thumb"), img = el("img");
          img.loading = "lazy"; img.decoding = "async"; img.alt = ""; img.src = url;
          box.appendChild(img); cell.appendChild(box);
        }
      } else if (c.key === "flags") {
        if (r.status === "error") { cell.textContent = r.error || "could not be read"; cell.title = cell.textContent; }
        r.flags.forEach(function (f) { cell.appendChild(el("span", "flag", SHORT_FLAG[f] || f)); });
        if (r.flags.length) cell.title = r.flags.join(", ");
      } else {
        cell.textContent = cellText(r, c);
        if (c.key === "path" || c.key === "study") cell.title = r[c.key] || "";
        if (c.key === "quality" && r.quality) cell.classList.add("q-" + r.quality);
      }
      row.appendChild(cell);
    });
    return row;
  }
  tbody.addEventListener("click", function (ev) {
    var row = ev.target.closest(".row");
    if (row) select(Number(row.dataset.i));
  });

  // Rows are built in chunks: the first screenful at once, the rest while the page is idle,
  // so a 10,000-image audit is usable before every row exists.
  var order = ROWS.slice().sort(compare);
  var built = 0, pending = null;
  function buildUpTo(n) {
    var frag = document.createDocumentFragment();
    for (; built < Math.min(n, order.length); built++) {
      var r = order[built];
      if (!elOf[r.i]) elOf[r.i] = makeRow(r);
      elOf[r.i].hidden = !passes(r);
      frag.appendChild(elOf[r.i]);
    }
    tbody.appendChild(frag);
  }
  function renderAll() {
    if (pending !== null) { clearTimeout(pending); pending = null; }
    buildUpTo(order.length);
    allBuilt();
  }
  function allBuilt() {
    if (document.documentElement.dataset.rows === "all") return;
    document.documentElement.dataset.rows = "all";
    performance.mark("medig-rows");
  }
  function buildLater() {
    pending = setTimeout(function () {
      pending = null;
      buildUpTo(built + 2000);
      if (built < order.length) buildLater(); else allBuilt();
    }, 0);
  }

  function applySort() {
    renderAll();
    order = ROWS.slice().sort(compare);
    var frag = document.createDocumentFragment();
    order.forEach(function (r) { frag.appendChild(elOf[r.i]); });
    tbody.appendChild(frag);
    thead.querySelectorAll("button").forEach(function (b) {
      if (b.dataset.key === sortKey) b.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else b.removeAttribute("aria-sort");
    });
    if (current !== null) elOf[current].scrollIntoView({ block: "nearest" });
  }

  // ------------------------------------------------------------------ filters
  var FACETS = [
    { key: "status", label: "Status", of: function (r) { return [r.status]; } },
    { key: "predicted", label: "Prediction", of: function (r) { return [r.status === "ok" ? String(r.predicted) : "(not explained)"]; } },
    { key: "flags", label: "Flags", of: function (r) { return r.status !== "ok" ? ["(not explained)"] : r.flags.length ? r.flags : ["no flags"]; } },
    { key: "quality", label: "Quality", of: function (r) { return [r.quality ? (QUALITY[r.quality] || r.quality) : "(no verdict)"]; } }
  ];
  var chosen = {}, query = "";
  FACETS.forEach(function (f) { chosen[f.key] = {}; });
  function passFacet(r, f) {
    var want = chosen[f.key], any = false;
    for (var k in want) if (want[k]) { any = true; break; }
    if (!any) return true;
    return f.of(r).some(function (v) { return want[v]; });
  }
  function passes(r, except) {
    if (query && r.find.indexOf(query) < 0) return false;
    for (var k = 0; k < FACETS.length; k++) if (FACETS[k] !== except && !passFacet(r, FACETS[k])) return false;
    return true;
  }
  var facetBox = document.getElementById("facets");
  var countEl = document.getElementById("count");
  var counters = {};
  FACETS.forEach(function (f) {
    var values = [];
    ROWS.forEach(function (r) { f.of(r).forEach(function (v) { if (values.indexOf(v) < 0) values.push(v); }); });
    if (values.length < 2 && f.key !== "flags") return;  // nothing to choose between
    values.sort();
    var fs = el("fieldset"); fs.appendChild(el("legend", null, f.label));
    counters[f.key] = {};
    values.forEach(function (v) {
      var lab = el("label"), box = el("input");
      box.type = "checkbox"; box.value = v; box.dataset.facet = f.key;
      box.addEventListener("change", function () { chosen[f.key][v] = box.checked; applyFilter(); });
      var n = el("span", "n");
      lab.appendChild(box); lab.appendChild(el("span", null, v)); lab.appendChild(n);
      counters[f.key][v] = { n: n, label: lab };
      fs.appendChild(lab);
    });
    facetBox.appendChild(fs);
  });
  var search = document.getElementById("search");
  search.addEventListener("input", function () { query = search.value.trim().toLowerCase(); applyFilter(); });

  var visible = ROWS.length;
  function updateCounts() {
    FACETS.forEach(function (f) {
      var cs = counters[f.key];
      if (!cs) return;
      var n = {};
      ROWS.forEach(function (r) { if (passes(r, f)) f.of(r).forEach(function (v) { n[v] = (n[v] || 0) + 1; }); });
      for (var v in cs) { cs[v].n.textContent = String(n[v] || 0); cs[v].label.classList.toggle("zero", !n[v]); }
    });
    countEl.textContent = visible === ROWS.length ? ROWS.length + " images"
      : visible + " of " + ROWS.length + " images shown";
  }
  function applyFilter() {
    renderAll();
    visible = 0;
    ROWS.forEach(function (r) { var ok = passes(r); elOf[r.i].hidden = !ok; visible += ok; });
    updateCounts();
  }

  // ------------------------------------------------------------------ viewer
  var viewer = document.getElementById("viewer");
  var current = null, opacity = 70, zoom = 1, tx = 0, ty = 0;
  // The map the overlay shows: -1 the one averaged over the baselines, else an index into
  // META.baseline_views (each baseline's own map, drawn at the same colour scale). Kept from
  // image to image where that image has it.
  var VIEWS = META.baseline_views || [], view = -1, cycleView = null;
  function viewUrl(r, k) {
    if (k < 0) return imageUrl(r.overlay);
    var v = VIEWS[k];
    if (!v || !r.views || r.views.indexOf(k) < 0 || typeof r.overlay !== "string" ||
        r.overlay.indexOf("overlays/") !== 0) return null;
    return imageUrl(v.dir + "/" + r.overlay.slice("overlays/".length));
  }
  function shown() { return order.filter(function (r) { return !elOf[r.i] || !elOf[r.i].hidden; }); }
  function step(d) {
    renderAll();
    var list = shown();
    if (!list.length) return;
    var at = -1;
    for (var k = 0; k < list.length; k++) if (list[k].i === current) { at = k; break; }
    var next = at < 0 ? (d > 0 ? 0 : list.length - 1) : Math.max(0, Math.min(list.length - 1, at + d));
    select(list[next].i);
  }
  function fig(dl, label, value) {
    if (value === null || value === undefined || value === "") return;
    dl.appendChild(el("dt", null, label));
    dl.appendChild(el("dd", null, value));
  }
  function select(i) {
    if (current !== null && elOf[current]) elOf[current].classList.remove("sel");
    current = i;
    var r = ROWS[i];
    if (elOf[i]) { elOf[i].classList.add("sel"); elOf[i].scrollIntoView({ block: "nearest" }); }
    zoom = 1; tx = 0; ty = 0;
    viewer.textContent = "";
    cycleView = null;
    viewer.appendChild(el("h3", null, r.path));
    var nav = el("div", "controls");
    var prev = el("button", null, "\u2190 Previous"), next = el("button", null, "Next \u2192");
    prev.type = next.type = "button";
    prev.addEventListener("click", function () { step(-1); });
    next.addEventListener("click", function () { step(1); });
    nav.appendChild(prev); nav.appendChild(next);
    viewer.appendChild(nav);
    var url = imageUrl(r.overlay);
    if (url) {
      var stage = el("div", "stage"), pan = el("div", "pan");
      var photo = el("img", "photo"), over = el("img", "over");
      photo.alt = "photograph"; over.alt = "attribution overlay";
      photo.draggable = over.draggable = false;
      over.style.opacity = String(opacity / 100);
      photo.addEventListener("load", function () {
        // overlays/*.png: the photograph, a strip of GAP pixels, the overlay, side by side
        var w = (photo.naturalWidth - GAP) / 2, h = photo.naturalHeight;
        if (w > 0 && h > 0) stage.style.aspectRatio = w + " / " + h;
      });
      photo.src = url; over.src = url;
      pan.appendChild(photo); pan.appendChild(over); stage.appendChild(pan);
      viewer.appendChild(stage);
      var ctl = el("div", "controls");
      var lab = el("label", "op", "Overlay " + opacity + "%");
      var slider = el("input");
      slider.type = "range"; slider.min = "0"; slider.max = "100"; slider.value = String(opacity);
      slider.id = "opacity"; slider.setAttribute("aria-label", "Overlay opacity");
      lab.htmlFor = "opacity";
      slider.addEventListener("input", function () {
        opacity = Number(slider.value);
        over.style.opacity = String(opacity / 100);
        lab.textContent = "Overlay " + opacity + "%";
      });
      ctl.appendChild(lab); ctl.appendChild(slider);
      [["\u2212", 1 / 1.5], ["+", 1.5], ["Fit", 0]].forEach(function (z) {
        var b = el("button", null, z[0]); b.type = "button";
        b.title = z[1] ? "Zoom" : "Fit the image";
        b.addEventListener("click", function () {
          if (!z[1]) { zoom = 1; tx = 0; ty = 0; } else zoomAt(z[1], stage.clientWidth / 2, stage.clientHeight / 2);
          applyView(pan);
        });
        ctl.appendChild(b);
      });
      viewer.appendChild(ctl);
      var base = "";
      cycleView = null;
      if (r.views && r.views.length) {
        if (view >= 0 && r.views.indexOf(view) < 0) view = -1;
        var group = el("div", "controls views");
        group.setAttribute("role", "group");
        group.setAttribute("aria-label", "Map shown");
        group.appendChild(el("span", "op", "Map"));
        var choices = [-1].concat(r.views), buttons = [];
        var show = function (k) {
          var u = viewUrl(r, k);
          if (!u) return;
          view = k; over.src = u;
          buttons.forEach(function (b, n) { b.setAttribute("aria-pressed", String(choices[n] === k)); });
        };
        choices.forEach(function (k) {
          var b = el("button", "view", k < 0 ? "averaged" : VIEWS[k].name);
          b.type = "button";
          b.dataset.view = k < 0 ? "averaged" : VIEWS[k].name;
          b.title = k < 0 ? "The map averaged over the baselines" : "The map against the " + VIEWS[k].name + " baseline alone (same colour scale)";
          b.addEventListener("click", function () { show(k); });
          buttons.push(b); group.appendChild(b);
        });
        cycleView = function () { show(choices[(choices.indexOf(view) + 1) % choices.length]); };
        viewer.appendChild(group);
        show(view);
        base = "Map: averaged over the baselines, or one baseline's own (b switches).";
      } else if (META.baselines && META.baselines.length > 1) {
        base = "The overlay is the map averaged over the baselines (" + META.baselines.join(", ") + "); this image's per-baseline maps were not stored.";
      }
      bindPanZoom(stage, pan);
      viewer.appendChild(el("p", "viewer-note", "Drag to pan, scroll to zoom. " + base));
    } else if (r.status === "error") {
      viewer.appendChild(el("p", "note", "Could not be read: " + (r.error || "unknown error")));
    } else {
      viewer.appendChild(el("p", "note", "No overlay for this image (" + r.status + ")."));
    }
    var dl = el("dl", "figs");
    fig(dl, "Status", r.status);
    fig(dl, "Reason", r.error);
    if (r.status === "ok") {
      fig(dl, "Prediction", r.predicted + (num(r.probability) !== null ? " (p = " + f2(r.probability) + ")" : ""));
      if (r.probabilities && typeof r.probabilities === "object") {
        fig(dl, "Probabilities", Object.keys(r.probabilities).map(function (k) { return k + ": " + f2(r.probabilities[k]); }).join("; "));
      }
      fig(dl, "Explained", r.target);
      fig(dl, "F(x), F(x')", num(r.score) !== null ? f4(r.score) + ", " + f4(r.baseline_score) : "");
      fig(dl, "Completeness gap", f4(r.delta));
      fig(dl, "Completeness error", pct(r.relative_error) + (r.flagged ? " \u2014 flagged incomplete" : ""));
      fig(dl, "Map error", f4(r.map_error));
      fig(dl, "Integration steps", r.n_steps);
      fig(dl, "Trust flags", r.flags.length ? r.flags.join(", ") : "none");
      fig(dl, "Baseline agreement", f2(r.baseline_agreement));
      fig(dl, "Strongest 5% shared", pct(r.baseline_topk_overlap));
      fig(dl, "Faithfulness", f2(r.faithfulness));
      fig(dl, "Occlusion agreement", f2(r.occlusion_agreement));
      fig(dl, "Pointing game", r.pointing_hit === true ? "hit" : r.pointing_hit === false ? "miss" : "");
      fig(dl, "Mass on lesions", num(r.mask_mass_fraction) !== null ? pct(r.mask_mass_fraction) + " (lesions cover " + pct(r.mask_area_fraction) + ")" : "");
    }
    if (r.quality) fig(dl, "Image quality", (QUALITY[r.quality] || r.quality) + (r.quality_reasons && r.quality_reasons.length ? ": " + r.quality_reasons.join("; ") : ""));
    fig(dl, "Field of view", r.fov_shape ? r.fov_shape + (num(r.fov_fraction) !== null ? " (" + pct(r.fov_fraction) + " of the frame)" : "") : "");
    fig(dl, "Sharpness", f4(r.sharpness));
    fig(dl, "Eye", r.laterality);
    fig(dl, "Study", r.study);
    if (r.metadata && typeof r.metadata === "object") {
      Object.keys(r.metadata).forEach(function (k) { fig(dl, k, typeof r.metadata[k] === "string" ? r.metadata[k] : JSON.stringify(r.metadata[k])); });
    }
    viewer.appendChild(dl);
  }
  function applyView(pan) {
    pan.style.transform = "translate(" + tx + "px," + ty + "px) scale(" + zoom + ")";
  }
  function zoomAt(f, x, y) {
    var z = Math.max(1, Math.min(16, zoom * f));
    tx = x - (x - tx) * z / zoom; ty = y - (y - ty) * z / zoom; zoom = z;
    if (zoom === 1) { tx = 0; ty = 0; }
  }
  function bindPanZoom(stage, pan) {
    var drag = null;
    stage.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var b = stage.getBoundingClientRect();
      zoomAt(ev.deltaY < 0 ? 1.25 : 0.8, ev.clientX - b.left, ev.clientY - b.top);
      applyView(pan);
    }, { passive: false });
    stage.addEventListener("pointerdown", function (ev) {
      drag = { x: ev.clientX - tx, y: ev.clientY - ty };
      stage.setPointerCapture(ev.pointerId); stage.classList.add("drag");
    });
    stage.addEventListener("pointermove", function (ev) {
      if (!drag || zoom === 1) return;
      tx = ev.clientX - drag.x; ty = ev.clientY - drag.y; applyView(pan);
    });
    function end() { drag = null; stage.classList.remove("drag"); }
    stage.addEventListener("pointerup", end);
    stage.addEventListener("pointercancel", end);
  }

  document.addEventListener("keydown", function (ev) {
    var t = ev.target;
    if (t && (t.tagName === "INPUT" && t.type !== "checkbox" || t.tagName === "TEXTAREA")) {
      if (ev.key === "Escape") t.blur();
      return;
    }
    if (document.getElementById("images").hidden || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "ArrowDown" || ev.key === "j") { step(1); ev.preventDefault(); }
    else if (ev.key === "ArrowUp" || ev.key === "k") { step(-1); ev.preventDefault(); }
    else if (ev.key === "/") { search.focus(); ev.preventDefault(); }
    else if (ev.key === "b" && cycleView) { cycleView(); ev.preventDefault(); }
  });

  buildUpTo(60);
  updateCounts();
  thead.querySelector('button[data-key="path"]').setAttribute("aria-sort", "ascending");
  performance.mark("medig-usable");
  document.documentElement.dataset.usable = "1";
  if (built < order.length) buildLater(); else allBuilt();
  if (location.hash === "#images") showTab("images");
})();
