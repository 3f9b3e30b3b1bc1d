// cnnlab explorer: the page. It talks only to the JSON API (/openapi.json); every number it
// shows comes from the server (cnnlab.viz, cnnlab.scratch, torch). Plain JS, no libraries.
"use strict";

const S = {
  models: [], model: null, details: null, blob: null, name: "", result: null, offsets: {},
  target: null, every: false, unit: null, strokes: [], busy: 0, seq: 0, camLayer: null,
  comparing: false, cseq: 0,
};
const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};

// ---- API ---------------------------------------------------------------------------------
async function api(path, opts) {
  const r = await fetch(path, opts);
  const ct = r.headers.get("content-type") || "";
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    if (ct.includes("json")) {
      const d = (await r.json()).detail;
      msg = typeof d === "string" ? d : JSON.stringify(d);
    }
    throw new Error(msg);
  }
  return ct.includes("json") ? r.json() : r;
}
function showError(e) {
  const box = $("error");
  if (!e) { box.hidden = true; return; }
  box.textContent = e.message || String(e);
  box.hidden = false;
}
function f32(b64) {
  const bin = atob(b64), buf = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) buf[i] = bin.charCodeAt(i);
  return new Float32Array(buf.buffer);
}
function u8(b64) {
  const bin = atob(b64), buf = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) buf[i] = bin.charCodeAt(i);
  return buf;
}
function fmt(v, d = 4) {
  if (v === null || v === undefined) return "—";
  if (!isFinite(v)) return v > 0 ? "∞" : "−∞";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return (Object.is(v, -0) ? 0 : v).toFixed(d);
}

// ---- colours -----------------------------------------------------------------------------
const NEG = [33, 102, 172], POS = [202, 60, 35], MID = [247, 247, 247];
function diverging(t) {  // t in [-1, 1]
  const c = t < 0 ? NEG : POS, s = Math.min(1, Math.abs(t)) ** 0.8;
  return [0, 1, 2].map((i) => Math.round(MID[i] + (c[i] - MID[i]) * s));
}
const INFERNO = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];
function inferno(t) {
  t = Math.max(0, Math.min(1, t)) * (INFERNO.length - 1);
  const i = Math.min(INFERNO.length - 2, Math.floor(t)), f = t - i;
  return [0, 1, 2].map((k) => Math.round(INFERNO[i][k] + (INFERNO[i + 1][k] - INFERNO[i][k]) * f));
}
function paintMap(canvas, data, h, w, scale) {
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const c = diverging(scale > 0 ? data[i] / scale : 0);
    img.data.set([c[0], c[1], c[2], 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
}
function paintImage(canvas, pixels, c, h, w) {  // uint8 CHW -> canvas
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const r = pixels[i], g = c === 3 ? pixels[h * w + i] : r, b = c === 3 ? pixels[2 * h * w + i] : r;
    img.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
}

// ---- models ------------------------------------------------------------------------------
async function loadModels() {
  S.models = await api("/api/models");
  const sel = $("model-select");
  sel.replaceChildren(...S.models.map((m) => el("option", { value: m.id, text: `${m.name} (${m.model})` })));
  sel.onchange = () => selectModel(sel.value);
  setupCompare();
  if (S.models.length) await selectModel(S.models[0].id);
}
async function selectModel(id) {
  S.model = S.models.find((m) => m.id === id);
  S.offsets = {}; S.target = null; S.unit = null; S.result = null; S.camLayer = null;
  $("unit-card").hidden = true;
  S.details = await api(`/api/models/${encodeURIComponent(id)}`);
  renderModelTab();
  const cam = $("cam-target");
  cam.replaceChildren(el("option", { value: "", text: "predicted class" }),
    ...S.model.classes.map((c, i) => el("option", { value: i, text: `${i}: ${c}` })));
  const m = /^sample-(\d+)\.png$/.exec(S.name);  // a test image: the new model's own
  if (S.blob && !m) await run(); else await loadSample(m ? parseInt(m[1], 10) : 0);
}

// ---- input -------------------------------------------------------------------------------
async function loadSample(index) {
  try {
    $("sample-label").textContent = "loading the test set…";
    const info = await api(`/api/models/${S.model.id}/samples`);
    index = ((index % info.count) + info.count) % info.count;
    $("sample-index").max = info.count - 1;
    $("sample-index").value = index;
    const r = await api(`/api/models/${S.model.id}/samples/${index}`);
    $("sample-label").textContent = `test image ${index} of ${info.count}, labelled ${r.headers.get("X-Class")}`;
    await setInput(await r.blob(), `sample-${index}.png`);
  } catch (e) { showError(e); }
}
async function setInput(blob, name) {
  S.blob = blob; S.name = name; S.unit = null;
  $("unit-card").hidden = true;
  await run();
  if (S.comparing) await runCompare();
}
async function run() {
  if (!S.blob || !S.model) return;
  const seq = ++S.seq;
  const fd = new FormData();
  fd.append("image", S.blob, S.name || "image.png");
  if (S.target !== null) fd.append("target", S.target);
  fd.append("offsets", JSON.stringify(S.offsets));
  fd.append("every_layer", S.every ? "true" : "false");
  if (S.camLayer) fd.append("cam_layer", S.camLayer);
  document.body.classList.add("busy");
  try {
    const res = await api(`/api/models/${S.model.id}/explore`, { method: "POST", body: fd });
    if (seq !== S.seq) return;  // a newer request is on its way
    S.result = res; showError(null);
    renderAll();
    document.body.dataset.input = S.name;  // which image the page shows (tests wait on it)
    delete document.body.dataset.failed;
    if (S.unit) await openUnit(S.unit.layer, ...S.unit.at);
  } catch (e) { if (seq === S.seq) { showError(e); clearResult(); } }
  finally { if (seq === S.seq) document.body.classList.remove("busy"); }
}

// A failed input (a bad or too large file) must not leave the previous image's prediction,
// maps and Grad-CAM on screen beside the new file's name: everything computed is cleared.
function clearResult() {
  S.result = null; S.unit = null; S.field = null; stopSlide();
  $("server-ms").textContent = "";
  $("top-class").textContent = "—"; delete $("top-class").dataset.index;
  $("bars").replaceChildren(); $("softmax-table").replaceChildren(); $("sm-shift").textContent = "";
  for (const id of ["seen-image", "cam-canvas"]) { const cv = $(id); cv.getContext("2d").clearRect(0, 0, cv.width, cv.height); }
  $("seen-norm").replaceChildren(); $("input-warnings").textContent = "";
  $("seen-caption").textContent = "—"; $("norm-caption").textContent = "";
  $("cam-caption").textContent = `no Grad-CAM: ${S.name} could not be used`;
  $("overview").replaceChildren(el("p", { class: "hint", text: `No maps: ${S.name} could not be used (see the message above).` }));
  $("unit-card").hidden = true;
  const ro = $("overview-value"); delete ro.dataset.unit; delete ro.dataset.value; restoreReadout();
  document.body.dataset.input = S.name; document.body.dataset.failed = "1";
}
function renderAll() {
  const r = S.result;
  $("server-ms").textContent = `computed in ${r.server_ms.toFixed(0)} ms`;
  renderSeen(r.input); renderPrediction(r.prediction); renderCam(r); renderOverview(r);
}
function renderSeen(inp) {
  const [c, h, w] = inp.shape;
  paintImage($("seen-image"), u8(inp.pixels), c, h, w);
  $("seen-caption").textContent = `${c}×${h}×${w} uint8 (resized)`;
  const norm = f32(inp.normalized), box = $("seen-norm"), scale = Math.max(Math.abs(inp.min), Math.abs(inp.max));
  box.replaceChildren();
  for (let k = 0; k < c; k++) {
    const cv = el("canvas", { class: "map" });
    paintMap(cv, norm.subarray(k * h * w, (k + 1) * h * w), h, w, scale);
    box.append(cv);
  }
  $("input-warnings").textContent = inp.warnings.length ? `Unlike the training images: ${inp.warnings.join("; ")}` : "";
  $("norm-caption").textContent = `(x/255 − ${inp.mean.map((v) => v.toFixed(3)).join(",")}) / ${inp.std.map((v) => v.toFixed(3)).join(",")}: ${fmt(inp.min, 2)} … ${fmt(inp.max, 2)}`;
}
function renderPrediction(p) {
  $("top-class").textContent = p.class;
  $("top-class").dataset.index = p.predicted;
  $("bars").replaceChildren(...p.top.map((t) => el("div", { class: "bar" },
    el("span", { class: "label", text: t.class }),
    el("span", { class: "track" }, el("span", { class: "fill", style: `width:${(100 * t.probability).toFixed(1)}%` })),
    el("span", { class: "pct", text: `${(100 * t.probability).toFixed(1)}%` }))));
  $("sm-shift").textContent = fmt(p.shift);
  const head = el("tr", {}, ...["class", "logit z", "z − m", "e^(z − m)", "÷ Σ = p"].map((t) => el("th", { text: t })));
  const rows = S.model.classes.map((c, i) => el("tr", { class: i === p.predicted ? "hl" : "" },
    el("td", { text: c }), el("td", { text: fmt(p.logits[i]) }), el("td", { text: fmt(p.logits[i] - p.shift) }),
    el("td", { text: fmt(p.exps[i]) }), el("td", { text: fmt(p.probs[i]) })));
  const foot = el("tr", { class: "sum" }, el("td", { text: "Σ" }), el("td"), el("td"),
    el("td", { text: fmt(p.sum) }), el("td", { text: fmt(p.probs.reduce((a, b) => a + b, 0)) }));
  $("softmax-table").replaceChildren(head, ...rows, foot);
}
function renderCam(r) {
  const g = r.gradcam;
  paintCam($("cam-canvas"), r.input, g);
  renderCamLayers(g);
  if (g.error) { $("cam-caption").textContent = g.error; return; }
  $("cam-caption").textContent = camCaption(r.input, g);
  $("cam-caption").dataset.resolution = (g.resolution || g.shape).join("x");
}
function paintCam(cv, input, g) {  // the input as the model sees it, the heat map over it
  const ctx = cv.getContext("2d");
  const [c, h, w] = input.shape, src = el("canvas");
  paintImage(src, u8(input.pixels), c, h, w);
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, cv.width, cv.height);
  ctx.drawImage(src, 0, 0, cv.width, cv.height);
  if (g.error) return;
  const [ch, cw] = g.shape, cam = f32(g.map), heat = el("canvas");
  heat.width = cw; heat.height = ch;
  const hctx = heat.getContext("2d"), img = hctx.createImageData(cw, ch);
  for (let i = 0; i < ch * cw; i++) {
    const col = inferno(cam[i]);
    img.data.set([col[0], col[1], col[2], 255], 4 * i);
  }
  hctx.putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = true;
  ctx.globalAlpha = 0.55; ctx.drawImage(heat, 0, 0, cv.width, cv.height); ctx.globalAlpha = 1;
}
function camCaption(input, g) {
  const [H, W] = input.shape.slice(1), res = g.resolution || g.shape;
  return `for class ${g.class} at layer ${g.layer}: ` +
    `its maps are ${res.join("×")}, so the heat map has ${res.join("×")} cells, stretched over the ${H}×${W} input ` +
    `(each cell ≈ ${(H / res[0]).toFixed(1)}×${(W / res[1]).toFixed(1)} pixels). ` +
    (res[0] < H ? "Deep layers are coarse (pooling and strides shrink the maps) but see the whole object; " +
      "pick an earlier layer for a finer, more local map." : "");
}
function renderCamLayers(g) {
  const sel = $("cam-layer"), layers = g.layers || [];
  const want = S.camLayer || g.layer || "";
  const key = layers.join(",");
  if (sel.dataset.key !== key) {
    sel.replaceChildren(...layers.map((n) => el("option", { value: n, text: n })));
    sel.dataset.key = key;
  }
  if (want) sel.value = want;
}

// ---- compare: two models side by side on one image (POST /api/compare?a=&b=) ---------------
// The Input card moves into the Compare tab while it is open, so the same test image,
// drawing or upload feeds both views.
function setupCompare() {
  const two = S.models.length > 1;
  $("compare-button").hidden = !two;
  if (!two) return;
  for (const [id, k] of [["compare-a", 0], ["compare-b", 1]]) {
    const sel = $(id);
    sel.replaceChildren(...S.models.map((m) => el("option", { value: m.id, text: `${m.name} (${m.model})` })));
    sel.value = S.models[k].id;
    sel.onchange = runCompare;
  }
}
function showCompare(on) {
  S.comparing = on;
  const card = $("input-card");
  if (on) { $("compare-input").append(card); runCompare(); }
  else if (card.parentElement.id === "compare-input") document.querySelector("#tab-explore .row.top").prepend(card);
}
async function runCompare() {
  if (!S.blob || !S.comparing) return;
  const a = $("compare-a").value, b = $("compare-b").value, seq = ++S.cseq;
  if (a === b) { $("compare-verdict").textContent = "pick two different models"; return; }
  const fd = new FormData();
  fd.append("image", S.blob, S.name || "image.png");
  document.body.classList.add("busy");
  try {
    const r = await api(`/api/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`, { method: "POST", body: fd });
    if (seq !== S.cseq) return;
    showError(null);
    $("compare-ms").textContent = `computed in ${r.server_ms.toFixed(0)} ms`;
    $("compare-verdict").textContent = r.same_class ? `both say ${r.a.prediction.class}` :
      `they disagree: ${r.a.prediction.class} vs ${r.b.prediction.class}`;
    renderCompareColumn($("compare-col-a"), "A", r.a);
    renderCompareColumn($("compare-col-b"), "B", r.b);
    document.body.dataset.compare = S.name;  // which image the Compare tab shows (tests wait on it)
  } catch (e) { if (seq === S.cseq) showError(e); }
  finally { if (seq === S.cseq) document.body.classList.remove("busy"); }
}
function renderCompareColumn(box, key, c) {
  const p = c.prediction, g = c.gradcam, cam = el("canvas", { class: "cam", width: 224, height: 224 });
  paintCam(cam, c.input, g);
  box.dataset.id = c.id;
  box.replaceChildren(
    el("h3", { text: `${key}: ${c.name} (${c.model}${c.test_accuracy == null ? "" :
      `, ${(100 * c.test_accuracy).toFixed(1)}% on its test set`}), sees ${c.input.shape.join("×")}` }),
    el("div", { class: "big compare-top", text: p.class }),
    el("div", { class: "bars" }, ...p.top.map((t) => el("div", { class: "bar" },
      el("span", { class: "label", text: t.class }),
      el("span", { class: "track" }, el("span", { class: "fill", style: `width:${(100 * t.probability).toFixed(1)}%` })),
      el("span", { class: "pct", text: `${(100 * t.probability).toFixed(1)}%` })))),
    el("h3", { text: "Grad-CAM" }), cam,
    el("div", { class: "hint", text: g.error || camCaption(c.input, g) }),
    el("h3", { text: c.filters.error ? "Filters" : `First-layer filters: ${c.filters.layer}, ` +
      `${c.filters.shape.join("×")}${c.filters.shown < c.filters.count ? ` (first ${c.filters.shown})` : ""}` }),
    c.filters.error ? el("div", { class: "hint", text: c.filters.error }) : filterGrid(c.filters));
}
// Each filter scaled to its own min..max: RGB for 3 input channels, gray for 1, as
// `cnnlab viz filters` draws a first layer (AlexNet's Figure 3).
function filterGrid(f) {
  const [, C, kh, kw] = f.shape, w = f32(f.data), n = kh * kw;
  const grid = el("div", { class: f.shown <= 16 ? "filters few" : "filters" });
  for (let k = 0; k < f.shown; k++) {
    const v = w.subarray(k * C * n, (k + 1) * C * n);
    let lo = Infinity, hi = -Infinity;
    for (const x of v) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
    const px = new Uint8Array(3 * n), s = hi > lo ? 255 / (hi - lo) : 0;
    for (let ch = 0; ch < 3; ch++) {
      const src = C === 3 ? ch : 0;
      for (let i = 0; i < n; i++) px[ch * n + i] = Math.round((v[src * n + i] - lo) * s);
    }
    const cv = el("canvas", { title: `filter ${k}` });
    paintImage(cv, px, 3, kh, kw);
    grid.append(cv);
  }
  return grid;
}

// ---- overview ----------------------------------------------------------------------------
function renderOverview(r) {
  const box = $("overview");
  box.replaceChildren();
  const [c, h, w] = r.input.shape, norm = f32(r.input.normalized);
  const scaleIn = Math.max(Math.abs(r.input.min), Math.abs(r.input.max));
  const inCol = column("input", `${c}×${h}×${w}`, "normalized");
  inCol.col.dataset.stage = "input";
  inCol.col.querySelector(".col-head").append(scaleBar(r.input.min, r.input.max));
  for (let k = 0; k < c; k++) inCol.maps.append(mapCell(norm.subarray(k * h * w, (k + 1) * h * w), h, w, scaleIn, null, k));
  box.append(inCol.col);
  for (const st of r.stages) box.append(stageColumn(st));
  const out = column("output", `${S.model.classes.length} classes`, "softmax");
  const p = r.prediction;
  for (let i = 0; i < p.probs.length; i++) {
    out.maps.append(el("div", { class: "prob" + (i === p.predicted ? " hl" : "") },
      el("span", { text: S.model.classes[i] }),
      el("span", { class: "track" }, el("span", { class: "fill", style: `width:${(100 * p.probs[i]).toFixed(1)}%` }))));
  }
  box.append(out.col);
  markUnit();
}
function column(title, shape, type) {
  const maps = el("div", { class: "maps" });
  const col = el("div", { class: "col" }, el("div", { class: "col-head" },
    el("b", { text: title }), el("span", { text: type }), el("span", { class: "muted", text: shape })), maps);
  return { col, maps };
}
function stageColumn(st) {
  const shape = st.shape.join("×"), c = column(st.name, shape, st.type);
  c.col.dataset.stage = st.name;
  const [h, w] = st.map_shape, data = f32(st.data), scale = Math.max(Math.abs(st.min), Math.abs(st.max));
  c.col.querySelector(".col-head").append(scaleBar(st.min, st.max));
  if (st.shape.length === 1) {  // a vector (flatten, fully connected): one column of units
    c.maps.append(vectorCell(data, st, scale));
    return c.col;
  }
  if (st.count > 8) c.maps.classList.add("two");
  for (let k = 0; k < st.count; k++) {
    c.maps.append(mapCell(data.subarray(k * h * w, (k + 1) * h * w), h, w, scale, st, st.offset + k));
  }
  if (st.channels > st.count || st.offset > 0) {
    const pager = el("div", { class: "pager" },
      el("button", { text: "◀", onclick: () => page(st, -1), ...(st.offset === 0 ? { disabled: "" } : {}) }),
      el("span", { text: `${st.offset}–${st.offset + st.count - 1} of ${st.channels}` }),
      el("button", { text: "▶", onclick: () => page(st, 1), ...(st.offset + st.count >= st.channels ? { disabled: "" } : {}) }));
    c.col.insertBefore(pager, c.maps);
  }
  return c.col;
}
// A column's colour scale with its numbers: the value of the darkest blue and red.
function scaleBar(min, max) {
  const m = Math.max(Math.abs(min), Math.abs(max));
  return el("span", { class: "scale", title: `colour scale: −${fmt(m, 3)} (blue) … 0 … ${fmt(m, 3)} (red); values ${fmt(min, 3)} … ${fmt(max, 3)}` },
    el("span", { class: "lo", text: fmt(min, 2) }), el("span", { class: "colorbar div" }), el("span", { class: "hi", text: fmt(max, 2) }));
}
function vectorCell(data, st, scale) {
  const n = data.length, cv = el("canvas", { class: "map vcol" });
  paintMap(cv, data, n, 1, scale);  // n rows of one unit: unit i is row i
  const cell = el("div", { class: "cell vcell", title: `${st.name}: ${n} units; hover to read, click to open` }, cv);
  cell.dataset.channel = 0;
  const at = (ev) => { const r = cv.getBoundingClientRect(); return Math.max(0, Math.min(n - 1, Math.floor(((ev.clientY - r.top) / r.height) * n))); };
  const show = (i, sticky) => {
    const ro = $("overview-value");
    ro.textContent = `${st.name} [unit ${i} of ${n}] = ${fmt(data[i])}`;
    if (sticky) { ro.dataset.value = data[i]; ro.dataset.unit = `${st.name}:0:0:${i}`; }
  };
  cv.addEventListener("mousemove", (ev) => show(at(ev), false));
  cv.addEventListener("mouseleave", () => restoreReadout());
  cv.addEventListener("click", (ev) => { const i = at(ev); show(i, true); if (st.unit_detail) openUnit(st.name, 0, 0, i); });
  return cell;
}
function page(st, dir) {
  S.offsets[st.name] = Math.max(0, st.offset + dir * st.page);
  run();
}
function mapCell(data, h, w, scale, st, channel) {
  const cv = el("canvas", { class: "map" + (h === 1 ? " vec" : "") });
  paintMap(cv, data, h, w, scale);
  const cell = el("div", { class: "cell", title: st ? `${st.name} channel ${channel}` : `input channel ${channel}` }, cv,
    el("span", { class: "ch", text: channel }));
  cell.dataset.channel = channel;
  const at = (ev) => {
    const rect = cv.getBoundingClientRect();
    const x = Math.min(w - 1, Math.floor(((ev.clientX - rect.left) / rect.width) * w));
    const y = Math.min(h - 1, Math.floor(((ev.clientY - rect.top) / rect.height) * h));
    return [y, x];
  };
  const show = (y, x, sticky) => {
    const v = data[y * w + x], ro = $("overview-value");
    ro.textContent = `${st ? st.name : "input"} [channel ${channel}, row ${y}, col ${x}] = ${fmt(v)}`;
    if (sticky) { ro.dataset.value = v; ro.dataset.unit = `${st ? st.name : "input"}:${channel}:${y}:${x}`; }
  };
  cv.addEventListener("mousemove", (ev) => { const [y, x] = at(ev); show(y, x, false); });
  cv.addEventListener("mouseleave", () => restoreReadout());
  cv.addEventListener("click", (ev) => {
    const [y, x] = at(ev);
    show(y, x, true);
    if (st && st.unit_detail) openUnit(st.name, channel, y, x);
    else if (st) unitUnavailable(st, h === 1);
  });
  return cell;
}
function restoreReadout() {
  const ro = $("overview-value");
  if (!ro.dataset.unit) { ro.textContent = "hover a map to read a value; click a unit for its detail"; return; }
  const [name, c, y, x] = ro.dataset.unit.split(":");
  if (S.result && (S.result.stages.find((s) => s.name === name) || {}).shape?.length === 1) {
    ro.textContent = `${name} [unit ${x}] = ${fmt(parseFloat(ro.dataset.value))}`; return;
  }
  ro.textContent = `${name} [channel ${c}, row ${y}, col ${x}] = ${fmt(parseFloat(ro.dataset.value))}`;
}
function unitUnavailable(st, vector) {
  $("unit-card").hidden = false;
  $("unit-title").textContent = `${st.name} · ${st.type}`;
  $("unit-body").replaceChildren(el("p", { class: "hint",
    text: vector ? `${st.name} gives a vector of ${st.shape[0]} values (after flattening), not maps: ` +
      `hover over it to read each value. Unit detail covers the maps of convolution, pooling and ReLU layers.`
      : `Unit detail covers convolution, pooling and ReLU layers; ${st.name} is a ${st.type}. ` +
      `Tick "every layer" above to see the layers inside it.` }));
}
function markUnit() {
  document.querySelectorAll(".cell .mark").forEach((m) => m.remove());
  if (!S.unit || !S.result) return;
  const { layer, at: [c, y, x], box, inputChannels } = S.unit;
  const col = document.querySelector(`.col[data-stage="${CSS.escape(layer)}"]`);
  if (!col) return;
  const st = S.result.stages.find((s) => s.name === layer);
  const cell = col.querySelector(`.cell[data-channel="${c}"]`);
  if (cell) addMark(cell, y, x, y, x, st.map_shape);
  document.querySelectorAll(".col.fed").forEach((e) => e.classList.remove("fed"));
  const f = S.field;  // its receptive field in every earlier column, and what it feeds
  if (!f || f.layer !== layer) return;
  for (const [name, b] of Object.entries(f.boxes)) {
    const pc = document.querySelector(`.col[data-stage="${CSS.escape(name)}"]`);
    if (pc) pc.querySelectorAll(".cell").forEach((cl) => {
      const cv = cl.querySelector("canvas");
      if (cv && cv.height > 1) addMark(cl, b[0], b[1], b[2], b[3], [cv.height, cv.width], "field");
    });
  }
  if (f.feeds) {
    const nc = document.querySelector(`.col[data-stage="${CSS.escape(f.feeds.column)}"]`);
    if (nc && f.feeds.all) nc.classList.add("fed");
    else if (nc) nc.querySelectorAll(".cell").forEach((cl) => {
      const cv = cl.querySelector("canvas"), b = f.feeds.box;
      if (cv && cv.height > 1) addMark(cl, b[0], b[1], b[2], b[3], [cv.height, cv.width], "feeds");
    });
  }
}
function addMark(cell, top, left, bottom, right, [h, w], kind) {
  const m = el("div", { class: "mark" + (kind ? " " + kind : "") });
  Object.assign(m.style, { top: `${(100 * top) / h}%`, left: `${(100 * left) / w}%`,
    height: `${(100 * (bottom - top + 1)) / h}%`, width: `${(100 * (right - left + 1)) / w}%` });
  cell.append(m);
}

// ---- unit detail -------------------------------------------------------------------------
async function openUnit(layer, c, y, x) {
  const fd = new FormData();
  fd.append("image", S.blob, S.name || "image.png");
  fd.append("layer", layer); fd.append("channel", c); fd.append("y", y); fd.append("x", x);
  try {
    const u = await api(`/api/models/${S.model.id}/unit`, { method: "POST", body: fd });
    S.unit = { layer, at: [c, y, x], box: u.window_box, inputChannels: u.channels || [],
      inputShape: u.input_shape };
    const st = S.result && S.result.stages.find((s) => s.name === layer);
    S.field = st && st.shape.length === 3 && S.details.stages.includes(layer) ? await api(`/api/models/${S.model.id}/field?layer=${encodeURIComponent(layer)}&y=${y}&x=${x}`) : null;
    renderUnit(u); markUnit(); showError(null);
    document.body.dataset.unit = `${layer}:${c}:${y}:${x}`;
  } catch (e) { showError(e); }
}
function grid(rows, cls, hi) {
  const t = el("table", { class: "grid " + (cls || "") });
  rows.forEach((row, i) => t.append(el("tr", {}, ...row.map((v, j) => el("td", {
    class: hi && hi[0] === i && hi[1] === j ? "chosen" : (v === null ? "pad" : ""), text: v === null ? "pad" : cellText(v),
    style: v === null ? "" : cellColor(v, rows) })))));
  return t;
}
function cellText(v) {  // two decimals in a grid; the exact values are in the totals
  return Math.abs(v) >= 1e4 ? v.toExponential(1) : (Math.abs(v) < 0.005 ? 0 : v).toFixed(2);
}
function cellColor(v, rows) {
  const m = Math.max(1e-12, ...rows.flat().filter((a) => a !== null).map(Math.abs));
  const c = diverging(v / m);
  return `background:rgb(${c[0]},${c[1]},${c[2]})`;
}
function renderUnit(u) {
  $("unit-card").hidden = false;
  stopSlide();
  const [c, y, x] = u.unit;
  $("unit-title").textContent = `Unit detail · ${u.layer} · ${u.type} · channel ${c}, row ${y}, col ${x}`;
  const body = $("unit-body");
  body.replaceChildren();
  const ok = el("span", { class: u.agree ? "ok" : "bad", text: u.agree ? "✓ agree" : "✗ differ" });
  const result = el("span", { id: "unit-result", class: "value", text: fmt(u.result, 5) });
  result.dataset.value = u.result;
  const torchV = el("span", { id: "unit-torch", class: "value", text: fmt(u.torch_value, 5) });
  torchV.dataset.value = u.torch_value;
  if (u.kind === "conv") {
    body.append(el("p", { class: "formula" }, `out[${c}, ${y}, ${x}] = bias + Σ over input channels, rows, columns of kernel × window ` +
      `(stride ${u.stride.join("×")}, padding ${u.padding.join("×")}${u.groups > 1 ? `, groups ${u.groups}` : ""})`));
    const maps = u.input_maps ? f32(u.input_maps) : null, [, H, W] = u.input_shape;
    const list = el("div", { class: "conv-rows", id: "unit-products" });
    u.channels.forEach((ch, i) => {
      const row = el("div", { class: "conv-row" });
      if (maps && i < u.input_maps_shown.length) {
        const cv = el("canvas", { class: "map big" });
        const slice = maps.subarray(i * H * W, (i + 1) * H * W);
        paintMap(cv, slice, H, W, Math.max(1e-12, ...Array.from(slice, Math.abs)));
        const cell = el("div", { class: "cell" }, cv);
        addMark(cell, u.window_box[0], u.window_box[1], u.window_box[2], u.window_box[3], [H, W]);
        row.append(el("figure", {}, cell, el("figcaption", { text: `input channel ${ch}` })));
      }
      row.append(el("figure", {}, grid(u.window[i]), el("figcaption", { text: "window" })), el("span", { class: "op", text: "×" }),
        el("figure", {}, grid(u.kernel[i]), el("figcaption", { text: `kernel [${c}, ${ch}]` })), el("span", { class: "op", text: "=" }),
        el("figure", {}, grid(u.products[i], "products"), el("figcaption", { text: "products" })),
        el("span", { class: "op", text: "Σ" }), el("span", { class: "value", text: fmt(u.channel_sums[i]) }));
      list.append(row);
    });
    body.append(list);
    if (u.channels_total > u.channels.length) body.append(el("p", { class: "hint", text: `${u.channels.length} of ${u.channels_total} input channels shown; the sum covers all.` }));
    const sum = el("span", { id: "unit-sum", class: "value", text: fmt(u.sum, 5) });
    sum.dataset.value = u.sum;
    const bias = el("span", { id: "unit-bias", class: "value", text: u.bias === null ? "0 (no bias)" : fmt(u.bias, 5) });
    bias.dataset.value = u.bias || 0;
    if (u.then_relu) body.append(el("p", { class: "hint", text: `${u.layer} is a convolution followed by a ReLU: the sum plus bias is ${fmt(u.conv_result, 5)}, and the unit is max(0, that).` }));
    body.append(el("p", { class: "total" }, "Σ products = ", sum, "  + bias ", bias, u.then_relu ? `  = ${fmt(u.conv_result, 5)}  → ReLU` : "", "  = ", result,
      el("span", { class: "muted", text: " (NumPy engine)" }), "   torch: ", torchV, " ", ok));
    if (maps) body.append(slidePanel(u, maps));
  } else if (u.kind === "maxpool" || u.kind === "avgpool") {
    const maps = u.input_maps ? f32(u.input_maps) : null, [, H, W] = u.input_shape;
    const row = el("div", { class: "conv-row", id: "unit-products" });
    if (maps) {
      const cv = el("canvas", { class: "map big" }), slice = maps.subarray(0, H * W);
      paintMap(cv, slice, H, W, Math.max(1e-12, ...Array.from(slice, Math.abs)));
      const cell = el("div", { class: "cell" }, cv);
      addMark(cell, u.window_box[0], u.window_box[1], u.window_box[2], u.window_box[3], [H, W]);
      row.append(el("figure", {}, cell, el("figcaption", { text: `input channel ${c}` })));
    }
    row.append(el("figure", {}, grid(u.window, "", u.chosen), el("figcaption", { text: "window" })));
    body.append(row);
    const how = u.kind === "maxpool" ? `max of the window (the first maximum, highlighted)` :
      `sum ${fmt(u.total)} ÷ ${u.count} values`;
    body.append(el("p", { class: "total" }, `${how} = `, result, el("span", { class: "muted", text: " (NumPy engine)" }),
      "   torch: ", torchV, " ", ok));
  } else if (u.kind === "linear") {
    renderLinear(u, body, c, y, x, result, torchV, ok);
  } else if (renderOther(u, body, result, torchV, ok)) {
    // flatten, batch norm, LRN, dropout, residual add, inception: renderOther drew it
  } else if (u.kind === "relu") {
    body.append(el("p", { class: "total", id: "unit-products" }, `ReLU: max(0, ${fmt(u.input_value, 5)}) = `, result,
      el("span", { class: "muted", text: " (NumPy engine)" }), "   torch: ", torchV, " ", ok));
  }
}

// ---- drawing pad -------------------------------------------------------------------------
function setupDraw() {
  const cv = $("draw-canvas"), ctx = cv.getContext("2d");
  let cur = null;
  const redraw = () => {
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, cv.width, cv.height);
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.lineJoin = "round";
    for (const s of S.strokes) {
      ctx.beginPath(); ctx.moveTo(s[0][0], s[0][1]);
      for (const [px, py] of s) ctx.lineTo(px, py);
      if (s.length === 1) ctx.lineTo(s[0][0] + 0.1, s[0][1]);
      ctx.stroke();
    }
  };
  const pos = (ev) => { const r = cv.getBoundingClientRect(); return [(ev.clientX - r.left) * cv.width / r.width, (ev.clientY - r.top) * cv.height / r.height]; };
  cv.addEventListener("pointerdown", (ev) => { cur = [pos(ev)]; S.strokes.push(cur); cv.setPointerCapture(ev.pointerId); redraw(); });
  cv.addEventListener("pointermove", (ev) => { if (cur) { cur.push(pos(ev)); redraw(); } });
  const end = () => { if (cur) { cur = null; sendDrawing(); } };
  cv.addEventListener("pointerup", end); cv.addEventListener("pointercancel", end);
  $("btn-clear").onclick = () => { S.strokes = []; redraw(); };
  $("btn-undo").onclick = () => { S.strokes.pop(); redraw(); if (S.strokes.length) sendDrawing(); };
  redraw();
  function sendDrawing() { cv.toBlob((b) => setInput(b, "drawing.png"), "image/png"); }
}

// ---- model tab ---------------------------------------------------------------------------
const pct = (v) => (v == null ? "—" : `${(100 * v).toFixed(2)}%`);
function renderModelTab() {
  const d = S.details, s = d.summary.error ? { layers: [], total_params: NaN, total_macs: NaN,
    mac_convention: `no summary: ${d.summary.error}` } : d.summary;
  const kv = [["model", `${d.model} ${JSON.stringify(d.model_kwargs)}`], ["checkpoint", d.checkpoint],
    ["trained on", d.data], ["epoch", d.epoch], ["test accuracy", pct(d.test_accuracy)], ["validation accuracy", pct(d.val_accuracy)],
    ["input", `${d.input.channels}×${d.input.size.join("×")}, mean ${d.input.mean.map((v) => v.toFixed(4)).join(", ")}, std ${d.input.std.map((v) => v.toFixed(4)).join(", ")}`],
    ["classes", d.classes.join(", ")], ["parameters", s.total_params.toLocaleString()],
    ["MACs per image", s.total_macs.toLocaleString()], ["stages shown", d.stages.join(", ")]];
  $("model-info").replaceChildren(el("h2", { text: d.name }), el("table", { class: "kv" },
    ...kv.map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: String(v) })))));
  const cols = ["name", "type", "output_shape", "params", "macs", "receptive_field", "jump"];
  const heads = ["Layer", "Type", "Output", "Params", "MACs", "RF", "Jump"];
  $("summary-table").replaceChildren(el("tr", {}, ...heads.map((h) => el("th", { text: h }))),
    ...s.layers.map((l) => el("tr", {}, ...cols.map((k) => el("td", { text:
      Array.isArray(l[k]) ? l[k].join("×") : (typeof l[k] === "number" ? l[k].toLocaleString() : (l[k] ?? "—")) })))));
  $("summary-notes").textContent = s.mac_convention;
  renderCurves(d.curves);
}
function renderCurves(cv) {
  const box = $("curves");
  box.replaceChildren();
  if (!cv.epoch || !cv.epoch.length) { box.append(el("p", { class: "hint", text: "no metrics.csv beside this checkpoint" })); return; }
  const series = (what) => [["train", "#1f77b4"], ["val", "#ff7f0e"], ["test", "#d62728"]]
    .map(([split, color]) => [split, cv[`${split}_${what}`], color])
    .filter(([, ys]) => ys && ys.some((v) => v !== null));
  box.append(chart("loss", cv.epoch, series("loss")), chart("accuracy", cv.epoch, series("acc")));
}
function chart(title, xs, series) {
  const W = 320, H = 200, L = 44, B = 28, T = 18, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("class", "chart");
  const all = series.flatMap((s) => (s[1] || []).filter((v) => v !== null));
  let lo = Math.min(...all), hi = Math.max(...all); if (hi === lo) { hi += 1; lo -= 1; }
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - 8), py = (y) => T + (1 - (y - lo) / (hi - lo)) * (H - T - B);
  const add = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text !== undefined) e.textContent = text; svg.append(e); };
  add("text", { x: L, y: 12, class: "ct" }, title);
  for (const v of [lo, (lo + hi) / 2, hi]) { add("line", { x1: L, x2: W - 8, y1: py(v), y2: py(v), class: "gl" }); add("text", { x: L - 4, y: py(v) + 4, class: "ax", "text-anchor": "end" }, v.toPrecision(3)); }
  add("text", { x: (L + W) / 2, y: H - 2, class: "ax", "text-anchor": "middle" }, "epoch");
  const step = Math.max(1, Math.ceil((x1 - x0 + 1) / 8));  // at most ~8 whole-epoch ticks
  for (let e = Math.ceil(x0); e <= x1; e += step) {
    add("line", { x1: px(e), x2: px(e), y1: H - B, y2: H - B + 4, class: "tick" });
    add("text", { x: px(e), y: H - B + 14, class: "ax xtick", "text-anchor": "middle" }, String(e));
  }
  series.forEach(([name, ys, color], i) => {
    if (!ys) return;
    const pts = xs.map((x, k) => (ys[k] === null ? null : `${px(x)},${py(ys[k])}`)).filter(Boolean).join(" ");
    add("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2, "data-series": name });
    // the legend's colour is an inline style: a CSS rule (.chart .ax) beats a fill attribute
    add("line", { x1: W - 74, x2: W - 62, y1: T + 8 + 14 * i, y2: T + 8 + 14 * i, stroke: color, "stroke-width": 2 });
    add("text", { x: W - 58, y: T + 12 + 14 * i, class: "legend-label", style: `fill:${color}`, "data-series": name }, name);
  });
  return svg;
}

// ---- playground --------------------------------------------------------------------------
let pgTimer = null, pgStep = 0;
async function playground() {
  const v = (id) => parseInt($(id).value, 10);
  const size = v("pg-size"), k = v("pg-kernel"), p = v("pg-padding"), s = v("pg-stride");
  clearInterval(pgTimer);
  try {
    const r = await api(`/api/output-size?size=${size}&kernel=${k}&padding=${p}&stride=${s}`);
    $("pg-formula").textContent = r.formula;
    const flag = $("pg-flag");
    flag.className = r.fits ? "ok" : "bad";
    flag.textContent = r.fits ? `The stride fits: the window ends exactly at the last column (output ${r.output}×${r.output}).`
      : `The stride does not fit: (W + 2P − K) = ${r.span} is not a multiple of S = ${s}; the last ${r.span % s} row(s)/column(s) are never covered, and PyTorch floors to ${r.output}.`;
    pgStep = 0;
    const draw = () => { drawPlayground(size, k, p, s, r.output, pgStep); pgStep = (pgStep + 1) % (r.output * r.output); };
    draw(); pgTimer = setInterval(draw, 700);
  } catch (e) {
    $("pg-formula").textContent = "—"; $("pg-flag").className = "bad"; $("pg-flag").textContent = e.message;
    const ctx = $("pg-canvas").getContext("2d"); ctx.clearRect(0, 0, 420, 420);
  }
}
function drawPlayground(size, k, p, s, out, step) {
  const cv = $("pg-canvas"), ctx = cv.getContext("2d"), n = size + 2 * p, cell = Math.floor(400 / n), o = 10;
  ctx.clearRect(0, 0, cv.width, cv.height);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    const pad = i < p || j < p || i >= n - p || j >= n - p;
    ctx.fillStyle = pad ? "#e4e4e4" : "#9ecae1";
    ctx.fillRect(o + j * cell + 1, o + i * cell + 1, cell - 2, cell - 2);
  }
  const oy = Math.floor(step / out), ox = step % out;
  ctx.strokeStyle = "#e6550d"; ctx.lineWidth = 3;
  ctx.strokeRect(o + ox * s * cell, o + oy * s * cell, k * cell, k * cell);
  ctx.fillStyle = "rgba(230,85,13,0.18)"; ctx.fillRect(o + ox * s * cell, o + oy * s * cell, k * cell, k * cell);
  const oc = $("pg-out"), octx = oc.getContext("2d"), c2 = Math.floor(180 / Math.max(out, 1));
  octx.clearRect(0, 0, oc.width, oc.height);
  for (let i = 0; i < out; i++) for (let j = 0; j < out; j++) {
    octx.fillStyle = i === oy && j === ox ? "#e6550d" : "#fdd0a2";
    octx.fillRect(10 + j * c2 + 1, 10 + i * c2 + 1, c2 - 2, c2 - 2);
  }
}

// ---- wiring ------------------------------------------------------------------------------
function setupTabs() {
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll("#tabs button").forEach((x) => x.classList.toggle("active", x === b));
    document.querySelectorAll(".tab").forEach((t) => { t.hidden = t.id !== `tab-${b.dataset.tab}`; });
    if (b.dataset.tab === "playground") playground(); else clearInterval(pgTimer);
    showCompare(b.dataset.tab === "compare");
  }));
  document.querySelectorAll("#input-tabs button").forEach((b) => b.addEventListener("click", () => {
    document.querySelectorAll("#input-tabs button").forEach((x) => x.classList.toggle("active", x === b));
    document.querySelectorAll(".src").forEach((t) => { t.hidden = t.id !== `src-${b.dataset.src}`; });
  }));
}
function setupInputs() {
  $("btn-random").onclick = () => loadSample(Math.floor(Math.random() * 1e9));
  $("sample-index").onchange = () => loadSample(parseInt($("sample-index").value, 10) || 0);
  $("file-input").onchange = (ev) => {
    const f = ev.target.files[0];
    if (f) { $("file-name").textContent = `${f.name} (${(f.size / 1024).toFixed(1)} KiB)`; setInput(f, f.name); }
  };
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault(); drop.classList.remove("over");
    const f = ev.dataTransfer.files[0];
    if (f) { $("file-name").textContent = f.name; setInput(f, f.name); }
  });
  $("cam-layer").onchange = () => { S.camLayer = $("cam-layer").value || null; run(); };
  $("cam-target").onchange = () => { S.target = $("cam-target").value === "" ? null : parseInt($("cam-target").value, 10); run(); };
  $("every-layer").onchange = () => { S.every = $("every-layer").checked; S.offsets = {}; run(); };
  ["pg-size", "pg-kernel", "pg-padding", "pg-stride"].forEach((id) => $(id).addEventListener("input", playground));
}
window.addEventListener("DOMContentLoaded", async () => {
  setupTabs(); setupInputs(); setupDraw(); restoreReadout();
  try { await loadModels(); } catch (e) { showError(e); }
  if (location.hash === "#compare" && S.models.length > 1) $("compare-button").click();
  document.body.dataset.ready = "1";
});

// ---- unit detail: the classifier half, normalisations and blocks --------------------------
const engine = () => el("span", { class: "muted", text: " (NumPy engine)" });
function totalLine(...parts) { return el("p", { class: "total", id: "unit-products" }, ...parts); }
function renderLinear(u, body, c, y, i, result, torchV, ok) {
  body.append(el("p", { class: "formula" }, `out[${i}] = bias[${i}] + Σⱼ w[${i}, j] · x[j] over ${u.in_features} inputs` +
    (u.source_shape ? ` (flattened from ${u.source_shape.join("×")} maps: input j is map ⌊j / ${u.source_shape[1] * u.source_shape[2]}⌋)` : "")));
  const order = u.products.map((p, k) => k).sort((a, b) => Math.abs(u.products[b]) - Math.abs(u.products[a])).slice(0, 12);
  const head = el("tr", {}, ...["input j", u.source_shape ? "from map, row, col" : "", "x[j]", "w[i, j]", "x·w"].map((t) => el("th", { text: t })));
  const [, H, W] = u.source_shape || [0, 1, 1];
  const rows = order.map((k) => { const j = u.shown[k];
    return el("tr", {}, el("td", { text: j }), el("td", { text: u.source_shape ? `${Math.floor(j / (H * W))}, ${Math.floor((j % (H * W)) / W)}, ${j % W}` : "" }),
      el("td", { text: fmt(u.inputs[k]) }), el("td", { text: fmt(u.weights[k]) }), el("td", { text: fmt(u.products[k]) })); });
  body.append(el("p", { class: "hint", text: `the ${order.length} largest products of ${u.in_features} (by size); the sum covers all` }),
    el("table", { class: "num", id: "linear-terms" }, head, ...rows));
  if (u.groups) {
    const g = [...u.groups].sort((a, b) => Math.abs(b.sum) - Math.abs(a.sum)).slice(0, 16);
    body.append(el("p", { class: "hint", text: "products summed per feature map they came from (largest first):" }),
      el("table", { class: "num", id: "linear-groups" }, el("tr", {}, el("th", { text: "map" }), el("th", { text: "inputs" }), el("th", { text: "Σ x·w" })),
        ...g.map((r) => el("tr", {}, el("td", { text: r.map }), el("td", { text: `${r.from}–${r.to}` }), el("td", { text: fmt(r.sum) })))));
  }
  const sum = el("span", { id: "unit-sum", class: "value", text: fmt(u.sum, 5) }); sum.dataset.value = u.sum;
  const bias = el("span", { id: "unit-bias", class: "value", text: u.bias === null ? "0 (no bias)" : fmt(u.bias, 5) }); bias.dataset.value = u.bias || 0;
  body.append(totalLine("Σ products = ", sum, "  + bias ", bias, "  = ", result, engine(), "   torch: ", torchV, " ", ok));
  if (u.is_output) {
    const cls = S.model.classes[i];
    body.append(el("p", {}, `This is the logit of class ${cls}; the softmax turns the logits into probabilities: `,
      el("a", { href: "#softmax-details", id: "to-softmax", onclick: () => { $("softmax-details").open = true;
        document.querySelectorAll("#softmax-table tr").forEach((tr, k) => tr.classList.toggle("hl", k === i + 1)); } }, "see the softmax, written out")));
  }
}
function renderOther(u, body, result, torchV, ok) {
  const tail = ["  = ", result, engine(), "   torch: ", torchV, " ", ok];
  const v = (x) => fmt(x, 5);
  if (u.kind === "flatten") {
    const [c, y, x] = u.source, [C, H, W] = u.source_shape;
    body.append(el("p", { class: "formula" }, `Flatten copies each value: element i of the vector is map c, row y, column x of the ${C}×${H}×${W} input, i = c·H·W + y·W + x.`),
      totalLine(`element ${u.unit[2]} ← map ${c}, row ${y}, col ${x}: ${u.formula}; value`, ...tail));
  } else if (u.kind === "batchnorm") {
    body.append(el("p", { class: "formula" }, "batch norm at inference: (x − running mean) / √(running var + ε) × weight + bias"),
      totalLine(`(${v(u.input_value)} − ${v(u.mean)}) / √(${v(u.var)} + ${u.eps}) × ${u.weight === null ? 1 : v(u.weight)} + ${u.bias === null ? 0 : v(u.bias)}`, ...tail));
  } else if (u.kind === "lrn") {
    body.append(el("p", { class: "formula" }, `local response norm across channels ${u.channels[0]}–${u.channels[u.channels.length - 1]}: a / (k + α/n · Σ a²)^β, n = ${u.size}, k = ${u.k}, α = ${u.alpha}, β = ${u.beta}`),
      totalLine(`${v(u.input_value)} / (${u.k} + ${u.alpha}/${u.size} · ${v(u.sum_squares)})^${u.beta}`, ...tail));
  } else if (u.kind === "dropout" || u.kind === "identity") {
    body.append(el("p", { class: "formula" }, u.note || "identity: the input passes through unchanged"), totalLine(`input ${v(u.input_value)}`, ...tail));
  } else if (u.kind === "residual") {
    body.append(el("p", { class: "formula" }, `residual block: out = ReLU(F(x) + shortcut(x)); F(x) is ${u.f_layer}'s output, the shortcut is ${u.shortcut}` +
      (u.via.length ? ` (stage ${u.stage} ends with block ${u.layer})` : "")),
      totalLine(`ReLU(F(x) ${v(u.f_value)} + shortcut ${u.shortcut_value === null ? "— (none)" : v(u.shortcut_value)}) = ReLU(${v(u.sum)})`, ...tail));
  } else if (u.kind === "inception") {
    const rows = u.branches.map((b, k) => el("tr", { class: k === u.chosen ? "hl" : "" }, el("td", { text: b.branch }),
      el("td", { text: `${b.channels[0]}–${b.channels[1]}` }), el("td", { text: b.layers })));
    body.append(el("p", { class: "formula" }, "inception: four branches run on the same input; their outputs are concatenated by channel"),
      el("table", { class: "num", id: "inception-branches" }, el("tr", {}, ...["branch", "channels", "layers"].map((t) => el("th", { text: t }))), ...rows),
      totalLine(`channel ${u.unit[0]} = ${u.branches[u.chosen].branch} channel ${u.branch_channel}:`, ...tail));
  } else return false;
  return true;
}

// ---- the kernel sliding over the real input ---------------------------------------------------
// The window of output channel k slides over input channel ch (the first shown) row by row;
// the output cell it makes is lit beside it. Starts paused when the user asks for reduced motion.
const SLIDE = { timer: null, pos: 0 };
function stopSlide() { clearInterval(SLIDE.timer); SLIDE.timer = null; }
function slidePanel(u, maps) {
  stopSlide();
  const [, H, W] = u.input_shape, [, Ho, Wo] = u.output_shape, [k] = u.unit;
  const [sh, sw] = u.stride, [ph, pw] = u.padding, [dh, dw] = u.dilation || [1, 1];
  const kh = (u.window_box[2] - u.window_box[0]) / dh + 1, kw = (u.window_box[3] - u.window_box[1]) / dw + 1;
  const slice = maps.subarray(0, H * W), inCv = el("canvas", { class: "map big" });
  paintMap(inCv, slice, H, W, Math.max(1e-12, ...Array.from(slice, Math.abs)));
  const inCell = el("div", { class: "cell", id: "slide-input" }, inCv);
  const st = S.result.stages.find((s) => s.name === u.layer);
  const outCv = el("canvas", { class: "map big" });
  if (st && st.map_shape[0] === Ho && k >= st.offset && k < st.offset + st.count) {
    paintMap(outCv, f32(st.data).subarray((k - st.offset) * Ho * Wo, (k - st.offset + 1) * Ho * Wo), Ho, Wo, Math.max(Math.abs(st.min), Math.abs(st.max)));
  } else { outCv.width = Wo; outCv.height = Ho; }
  const outCell = el("div", { class: "cell", id: "slide-output" }, outCv);
  const label = el("span", { class: "hint", id: "slide-pos" });
  SLIDE.pos = u.unit[1] * Wo + u.unit[2];
  const draw = () => {
    const oy = Math.floor(SLIDE.pos / Wo), ox = SLIDE.pos % Wo, top = oy * sh - ph, left = ox * sw - pw;
    inCell.querySelectorAll(".mark").forEach((m) => m.remove()); outCell.querySelectorAll(".mark").forEach((m) => m.remove());
    addMark(inCell, top, left, top + (kh - 1) * dh, left + (kw - 1) * dw, [H, W], "window");
    addMark(outCell, oy, ox, oy, ox, [Ho, Wo], "window");
    label.textContent = `output row ${oy}, col ${ox} ← window rows ${top}…${top + (kh - 1) * dh}, cols ${left}…${left + (kw - 1) * dw}`;
    label.dataset.pos = `${oy}:${ox}`;
  };
  const step = () => { SLIDE.pos = (SLIDE.pos + 1) % (Ho * Wo); draw(); };
  const play = el("button", { id: "slide-play", text: "▶ play" });
  const setPlaying = (on) => {
    stopSlide();
    if (on) SLIDE.timer = setInterval(step, 350);
    play.textContent = on ? "❚❚ pause" : "▶ play"; play.dataset.playing = on ? "1" : "0";
  };
  play.onclick = () => setPlaying(!SLIDE.timer);
  const reduced = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  draw(); setPlaying(!reduced);
  return el("div", { class: "slide", id: "slide" },
    el("h3", { text: `The kernel of channel ${k} sliding over input channel ${u.input_maps_shown[0]} (stride ${sh}×${sw}, padding ${ph}×${pw})` }),
    el("div", { class: "conv-row" }, el("figure", {}, inCell, el("figcaption", { text: `input channel ${u.input_maps_shown[0]}` })),
      el("span", { class: "op", text: "→" }), el("figure", {}, outCell, el("figcaption", { text: `${u.layer} channel ${k}` }))),
    el("div", { class: "buttons" }, play, el("button", { id: "slide-step", text: "step ▶|", onclick: () => { setPlaying(false); step(); } }), label,
      reduced ? el("span", { class: "hint", text: "(paused: your system asks for reduced motion)" }) : ""));
}
