// pic review page: a grid of photos with pic's crop drawn on them, keyboard-first decisions, drag to adjust.
// Plain JavaScript, no build step, nothing loaded from anywhere but this local server. Every text that comes
// from the catalog (file names) goes through textContent, never innerHTML.
"use strict";
(() => {
  const token = document.querySelector('meta[name="pic-token"]').content;
  const $ = (id) => document.getElementById(id);
  const grid = $("grid");
  const state = {
    photos: [], // loaded photos, in review order
    index: new Map(), // id -> position in photos
    alt: new Map(), // id -> alternative chosen on the page (0 = pic's suggestion)
    sel: 0,
    nextPage: 0,
    pages: null,
    pageSize: 60,
    loading: null,
    ratios: ["free"],
    large: false,
    filter: "all", // which cards the grid shows: all | review | cropped | uncropped | rejected
    edit: null, // crop being adjusted in the large view
    zoom: null, // the 100% view: { id, plan } (plan: what img/<id>/full serves: size, full size, note)
    showSubject: false, // "show subject": outline what pic framed
    busy: false,
  };

  // --- server ---

  async function api(method, path, body) {
    const opts = { method, headers: { "X-Pic-Token": token } };
    if (method === "POST") {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body || {});
    }
    const response = await fetch(path, opts);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) throw new Error((data && data.error) || `HTTP ${response.status}`);
    if (method === "POST") showSummary();  // a decision or an undo changes how many are reviewed
    return data;
  }

  function summaryText(s) {
    const who = s.user ? `user ${s.user}` : "no --user: decisions are written but not learned";
    return `${s.total} photos · ${s.reviewed} reviewed · ${who}`;
  }
  async function showSummary() {
    try {
      $("summary").textContent = summaryText(await api("GET", "api/state"));
    } catch (e) { /* the count waits for the next decision */ }
  }

  function message(text, isError) {
    const m = $("message");
    m.textContent = text;
    m.classList.toggle("error", !!isError);
  }

  // --- model helpers ---

  function crops(p) {
    return p.crop ? [p.crop, ...p.alternatives.map((a) => a.crop)] : [];
  }
  function decided(p) {
    return p.decision && p.decision.decision !== "rejected" ? p.decision : null;
  }
  function shown(p) {
    // The crop a card shows: the user's decision unless they picked an alternative since, else the alternative.
    if (state.large && state.edit && current() === p) return state.edit;
    const d = decided(p);
    if (d && !state.alt.has(p.id)) return d.crop;
    return crops(p)[state.alt.get(p.id) || 0] || null;
  }
  function confidence(p) {
    const i = state.alt.get(p.id) || 0;
    const s = i === 0 ? p.score : (p.alternatives[i - 1] || {}).score;
    return typeof s === "number" ? `${Math.round(s * 100)}%` : "–";
  }
  function wholeFrame(box) {
    return !!box && Math.abs(box[0]) < 1e-3 && Math.abs(box[1]) < 1e-3 && Math.abs(box[2] - 1) < 1e-3 && Math.abs(box[3] - 1) < 1e-3;
  }
  const NAMED_RATIOS = ["1:1", "4:5", "5:4", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "2:1", "1:2"];
  function cropText(p) {
    // What the photographer reads: pixels and ratio, or plainly that pic would keep the whole photo.
    const box = shown(p);
    if (!box) return "no crop";
    if (wholeFrame(box)) return decided(p) ? "kept uncropped" : "no crop suggested";
    const [W, H] = p.size;
    const conf = ` · confidence ${confidence(p)}`;
    if (!W || !H) return `${Math.round((box[2] - box[0]) * (box[3] - box[1]) * 100)}% of the frame${conf}`;
    const w = Math.round((box[2] - box[0]) * W), h = Math.round((box[3] - box[1]) * H);
    const a = w / Math.max(h, 1);
    const name = NAMED_RATIOS.find((r) => { const [x, y] = r.split(":").map(Number); return Math.abs(a / (x / y) - 1) <= 0.01; });
    return `${w} x ${h}, ${name || `${a.toFixed(2)}:1`}${conf}`;
  }
  function aspect(p) {
    // Locked ratio as normalized width / height (null when free).
    const [w, h] = p.size;
    if (!p.ratio || p.ratio === "free" || !w || !h) return null;
    if (p.ratio === "original") return 1;
    const parts = p.ratio.split(":").map(Number);
    return parts.length === 2 && parts[0] > 0 && parts[1] > 0 ? (parts[0] / parts[1]) * (h / w) : null;
  }
  function current() {
    return state.photos[state.sel];
  }

  // --- grid ---

  function visible(name) {
    // Control characters in file names (a newline is legal on Linux) shown the way `pic` prints them.
    const named = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
    return name.replace(/[\u0000-\u001f\u007f]/g, (c) => named[c] || `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function place(node, box) {
    node.style.left = `${box[0] * 100}%`;
    node.style.top = `${box[1] * 100}%`;
    node.style.width = `${(box[2] - box[0]) * 100}%`;
    node.style.height = `${(box[3] - box[1]) * 100}%`;
  }
  function subjectBox(p) {
    // The subject to outline, or null (the checkbox is off, or pic saw no subject in this photo).
    const b = p && state.showSubject && Array.isArray(p.subject) && p.subject.length === 4 ? p.subject : null;
    return b && b[2] > b[0] && b[3] > b[1] ? b : null;
  }
  function drawSubject(node, p) {
    // ``node`` is a .subject box with a .subject-label inside (its kind: text from the catalog, never HTML).
    const b = subjectBox(p);
    node.hidden = !b;
    if (!b) return;
    place(node, b);
    node.querySelector(".subject-label").textContent = p.subject_kind || "subject";
  }
  function subjectNode() {
    const node = el("div", "subject");
    node.append(el("span", "subject-label"));
    return node;
  }

  function matches(p) {
    // The filter picker: decided or not, and whether the crop shown keeps the whole frame.
    const status = p.decision ? p.decision.decision : p.status;
    const box = shown(p);
    switch (state.filter) {
      case "review": return !p.decision && status !== "rejected" && status !== "accepted" && status !== "adjusted";
      case "rejected": return status === "rejected";
      case "cropped": return status !== "rejected" && !!box && !wholeFrame(box);
      case "uncropped": return status !== "rejected" && (!box || wholeFrame(box));
      default: return true;
    }
  }

  function renderCard(p, fig) {
    fig.replaceChildren();
    fig.className = "card";
    const status = p.decision ? p.decision.decision : p.status;
    if (status) fig.classList.add(status);
    fig.hidden = !matches(p);
    if (state.photos[state.sel] === p) fig.classList.add("selected");
    fig.dataset.id = String(p.id);
    const frame = el("div", "frame");
    if (p.missing) {
      frame.classList.add("placeholder");
      fig.append(frame, el("figcaption", "", "photo no longer in the catalog"));
      return;
    }
    const img = el("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = visible(p.name);
    if (p.size[0] && p.size[1]) { img.width = p.size[0]; img.height = p.size[1]; }
    img.src = `img/${p.id}/thumb?v=${encodeURIComponent(p.key)}`;
    frame.append(img);
    const box = shown(p);
    const chosen = state.alt.get(p.id) || 0;
    crops(p).forEach((c, i) => {
      if (i === chosen) return;
      const alt = el("div", "alt");
      place(alt, c);
      frame.append(alt);
    });
    if (box && !wholeFrame(box)) {  // keeping the full frame: no white border around the whole photo
      const crop = el("div", "crop");
      place(crop, box);
      frame.append(crop);
    }
    if (subjectBox(p)) {
      const subject = subjectNode();
      drawSubject(subject, p);
      frame.append(subject);
    }
    const cap = el("figcaption");
    cap.append(el("span", "name", visible(p.name)));
    const meta = el("span", "meta");
    meta.append(el("span", "conf", cropText(p)));
    const n = crops(p).length;
    if (n > 1) meta.append(el("span", "", `crop ${chosen + 1}/${n}`));
    meta.append(el("span", `badge ${status}`, status === "suggested" ? "to review" : status));
    cap.append(meta);
    fig.append(frame, cap);
  }

  function cardOf(p) {
    return grid.querySelector(`figure[data-id="${p.id}"]`);
  }
  function refresh(p) {
    const fig = cardOf(p);
    if (fig) renderCard(p, fig);
    if (state.large && current() === p) renderLarge();
  }
  function update(p) {
    // A photo as the server returns it after a decision: replace ours.
    const i = state.index.get(p.id);
    if (i === undefined) return null;
    state.photos[i] = p;
    refresh(p);
    return p;
  }

  async function loadNext() {
    if (state.loading) return state.loading;
    if (state.pages !== null && state.nextPage >= state.pages) return null;
    state.loading = (async () => {
      try {
        const page = await api("GET", `api/photos?page=${state.nextPage}&size=${state.pageSize}`);
        state.pages = page.pages;
        state.nextPage = page.page + 1;
        for (const p of page.photos) {
          state.index.set(p.id, state.photos.length);
          state.photos.push(p);
          const fig = el("figure");
          renderCard(p, fig);
          grid.append(fig);
        }
        if (state.photos.length && !grid.querySelector(".selected")) select(state.sel);
      } catch (e) {
        message(`could not load photos: ${e.message}`, true);
      } finally {
        state.loading = null;
      }
    })();
    return state.loading;
  }

  async function select(i) {
    if (i >= state.photos.length && state.pages !== null && state.nextPage < state.pages) await loadNext();
    if (!state.photos.length) return;
    i = Math.max(0, Math.min(i, state.photos.length - 1));
    const old = current();
    state.sel = i;
    if (old && old !== current()) {
      state.edit = null;
      const f = cardOf(old);
      if (f) f.classList.remove("selected");
    }
    const fig = cardOf(current());
    if (fig) {
      fig.classList.add("selected");
      fig.scrollIntoView({ block: "nearest" });
    }
    showRatio();
    if (state.large) renderLarge();
  }

  function showRatio() {
    const p = current();
    const picker = $("ratio-picker");
    if (p && p.ratio && picker.value !== p.ratio) picker.value = p.ratio;
  }

  function step(n) {
    // Move n cards (negative: back), over the cards the filter hides.
    const dir = Math.sign(n);
    let i = state.sel;
    for (let left = Math.abs(n); left > 0; left--) {
      let j = i + dir;
      while (j >= 0 && j < state.photos.length && !matches(state.photos[j])) j += dir;
      if (j >= state.photos.length) return select(j);  // the next page, if there is one
      if (j < 0) break;
      i = j;
    }
    return select(i);
  }

  function columns() {
    const cards = [...grid.children].filter((c) => !c.hidden);
    if (!cards.length) return 1;
    const top = cards[0].offsetTop;
    let n = 0;
    while (n < cards.length && cards[n].offsetTop === top) n++;
    return Math.max(1, n);
  }

  // --- decisions ---

  async function act(fn) {
    if (state.busy) return;
    state.busy = true;
    try { await fn(); } catch (e) { message(e.message, true); } finally { state.busy = false; }
  }

  function accept(replace) {
    return act(async () => {
      const p = current();
      if (!p || !p.crop) return;
      let res;
      if (state.large && state.edit) {
        res = await api("POST", `api/photos/${p.id}/adjust`, { crop: state.edit, replace });
      } else if (decided(p) && !state.alt.has(p.id)) {
        message(`${visible(p.name)}: already ${p.decision.decision}`);
        return select(state.sel + 1);
      } else {
        res = await api("POST", `api/photos/${p.id}/accept`, { index: state.alt.get(p.id) || 0, replace });
      }
      state.edit = null;
      state.alt.delete(p.id);
      update(res);
      const w = res.written || { written: [], notes: [] };
      const notes = w.notes.length ? ` — ${w.notes.join("; ")}` : "";
      message(`${res.decision.decision}: ${visible(res.name)} — written as your crop to ${w.written.join(", ") || "pic's catalog"}${notes} (U to undo)`);
      await select(state.sel + 1);
    });
  }

  function reject() {
    return act(async () => {
      const p = current();
      if (!p || !p.crop) return;
      const res = await api("POST", `api/photos/${p.id}/reject`, {});
      state.alt.delete(p.id);
      state.edit = null;
      update(res);
      message(`rejected: ${visible(res.name)} (U to undo)`);
      await select(state.sel + 1);
    });
  }

  function undo() {
    return act(async () => {
      const res = await api("POST", "api/undo", {});
      state.alt.delete(res.id);
      state.edit = null;
      update(res);
      const i = state.index.get(res.id);
      if (i !== undefined) await select(i);
      message(`undone: ${res.undone} on ${visible(res.name)}`);
    });
  }

  function nextAlternative(step) {
    const p = current();
    if (!p) return;
    const n = crops(p).length;
    if (n < 2) return;
    const i = ((state.alt.get(p.id) || 0) + step + n) % n;
    state.alt.set(p.id, i);
    state.edit = null;
    refresh(p);
    message(`${visible(p.name)}: crop ${i + 1} of ${n}`);
  }

  function cycleRatio(step) {
    const r = state.ratios;
    const p = current();
    if (!p) return null;
    return setRatio(r[(r.indexOf(p.ratio) + step + r.length) % r.length]);
  }
  function setRatio(next) {
    return act(async () => {
      const p = current();
      if (!p || p.ratio === next) return;
      message(`${visible(p.name)}: suggesting for ${next}…`);
      const res = await api("POST", `api/photos/${p.id}/ratio`, { ratio: next });
      state.alt.delete(p.id);
      state.edit = null;
      update(res);
      showRatio();
      message(`${visible(res.name)}: ratio ${res.ratio}`);
    });
  }

  // --- large view: before/after and drag handles ---

  const stage = $("stage");
  const editor = $("editor");
  const largeImg = $("large-img");
  const afterImg = $("after-img");
  const after = $("after");

  function openLarge() {
    const p = current();
    if (!p || p.missing) return;
    state.large = true;
    state.edit = null;
    $("large").hidden = false;
    renderLarge();
  }
  function closeLarge() {
    state.large = false;
    state.edit = null;
    $("large").hidden = true;
    const p = current();
    if (p) refresh(p);
  }

  function renderLarge() {
    const p = current();
    if (!p) return;
    const src = `img/${p.id}/preview?v=${encodeURIComponent(p.key)}`;
    if (largeImg.getAttribute("src") !== src) {
      largeImg.src = src;
      afterImg.src = src;
    }
    $("large-title").textContent = visible(p.name);
    let status = p.decision ? p.decision.decision : p.status;
    if (status === "suggested") status = "to review";
    const theirs = (p.found || []).filter((f) => !f.pic).map((f) => f.source);
    $("large-info").textContent =
      `${cropText(p)} · ${status}` +
      (theirs.length && !decided(p) ? ` · has your own crop (${[...new Set(theirs)].join(", ")}): Shift+Enter replaces it` : "") +
      (state.edit ? " · adjusted: Enter saves, Esc drops" : "");
    if (p.found === undefined) loadFound(p);
    const box = shown(p);
    editor.hidden = !box;
    $("shade").hidden = !box;
    if (box) {
      place(editor, box);
      place($("shade"), box);
    }
    drawSubject($("large-subject"), p);
    renderAfter(p, box);
  }

  // --- 100% view: actual pixels, panned by dragging or the arrow keys ---

  const zoomPane = $("zoom-pane");
  const zoomStage = $("zoom-stage");
  const zoomImg = $("zoom-img");
  let zoomAsking = false;
  zoomImg.addEventListener("load", () => {
    // The pixels are the truth: a RAW whose demosaic failed falls back to its (smaller) preview after the plan.
    const z = state.zoom;
    if (!z || !zoomImg.naturalWidth || zoomImg.naturalWidth === z.plan.size[0]) return;
    z.plan.size = [zoomImg.naturalWidth, zoomImg.naturalHeight];
    z.plan.scale = z.plan.full[0] ? zoomImg.naturalWidth / z.plan.full[0] : 1;
    renderZoom();
  });
  zoomImg.addEventListener("error", async () => {
    // The plan said yes but the pixels failed (the file changed or went away): say why, in the server's words.
    const src = zoomImg.getAttribute("src");
    if (!state.zoom || !src) return;
    let why = "could not load the 100% view";
    try { why = (await (await fetch(src)).json()).error || why; } catch (e) { /* keep the generic words */ }
    message(why, true);
  });

  async function openZoom() {
    const p = current();
    if (!p || p.missing || state.zoom || zoomAsking) return;
    let plan;
    zoomAsking = true;  // a second Z while the first is asked must not open it twice
    try {
      // Asked first (headers only): a photo over pic's decode budget is refused with a message, not a broken image.
      plan = await api("GET", `api/photos/${p.id}/full`);
    } catch (e) {
      message(`${visible(p.name)}: ${e.message}`, true);
      return;
    } finally {
      zoomAsking = false;
    }
    if (current() !== p || state.zoom) return;  // the user moved on while we asked
    state.zoom = { id: p.id, plan };
    $("zoom").hidden = false;
    zoomImg.src = `img/${p.id}/full?v=${encodeURIComponent(p.key)}`;
    renderZoom();
    // Start on the crop's centre (or the photo's): that is where its edges and sharpness are judged.
    const box = shown(p) || [0, 0, 1, 1];
    const r = zoomStage.getBoundingClientRect();
    zoomPane.scrollLeft = ((box[0] + box[2]) / 2) * r.width - zoomPane.clientWidth / 2;
    zoomPane.scrollTop = ((box[1] + box[3]) / 2) * r.height - zoomPane.clientHeight / 2;
    if (plan.note) message(`${visible(p.name)}: ${plan.note}`);
  }

  function closeZoom() {
    if (!state.zoom) return;
    state.zoom = null;
    $("zoom").hidden = true;
    zoomImg.removeAttribute("src");  // a decoded 24 MP image holds about 100 MB in the tab
  }

  function renderZoom() {
    const z = state.zoom;
    const p = current();
    if (!z || !p) return;
    const [w, h] = z.plan.size;
    // One image pixel per screen pixel: a CSS pixel is devicePixelRatio screen pixels.
    const dpr = window.devicePixelRatio || 1;
    zoomStage.style.width = `${w / dpr}px`;
    zoomStage.style.height = `${h / dpr}px`;
    const pct = Math.round(z.plan.scale * 100);
    $("zoom-title").textContent = visible(p.name);
    const info = $("zoom-info");
    info.textContent = `${pct === 100 ? "100%" : `${pct}% of the original`} · ${w} x ${h} px` +
      (z.plan.note ? ` · ${z.plan.note}` : "") + " · drag or arrow keys to pan";
    info.classList.toggle("reduced", pct !== 100);
    const box = shown(p);
    const crop = $("zoom-crop");
    crop.hidden = !box || wholeFrame(box);
    if (!crop.hidden) place(crop, box);
    drawSubject($("zoom-subject"), p);
  }

  let pan = null;
  zoomPane.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    zoomPane.setPointerCapture(e.pointerId);
    pan = { x: e.clientX, y: e.clientY, left: zoomPane.scrollLeft, top: zoomPane.scrollTop };
    zoomPane.classList.add("panning");
  });
  zoomPane.addEventListener("pointermove", (e) => {
    if (!pan) return;
    zoomPane.scrollLeft = pan.left - (e.clientX - pan.x);
    zoomPane.scrollTop = pan.top - (e.clientY - pan.y);
  });
  const endPan = () => { pan = null; zoomPane.classList.remove("panning"); };
  zoomPane.addEventListener("pointerup", endPan);
  zoomPane.addEventListener("pointercancel", endPan);

  function panBy(dx, dy) {
    zoomPane.scrollBy(dx * zoomPane.clientWidth * 0.2, dy * zoomPane.clientHeight * 0.2);
  }

  function toggleZoom() {
    return state.zoom ? closeZoom() : openZoom();
  }

  function setShowSubject(on) {
    state.showSubject = on;
    $("show-subject").checked = on;
    for (const p of state.photos) { const f = cardOf(p); if (f) renderCard(p, f); }
    if (state.large) renderLarge();
    renderZoom();
    const p = current();
    if (on && p && !p.subject) message(`${visible(p.name)}: pic sees no subject in this photo`);
  }

  async function loadFound(p) {
    // The crops already in the photo's sidecars (asked once per photo, when the large view shows it).
    p.found = [];
    try {
      const detail = await api("GET", `api/photos/${p.id}`);
      p.found = detail.found || [];
      if (state.large && current() === p) renderLarge();
    } catch (e) {
      p.found = [];
    }
  }

  function renderAfter(p, box) {
    if (!box) return;
    const pane = after.parentElement.getBoundingClientRect();
    const [w, h] = p.size;
    const cw = (box[2] - box[0]) * w;
    const ch = (box[3] - box[1]) * h;
    const scale = Math.min(pane.width / cw, (window.innerHeight - 140) / ch);
    const fw = Math.max(1, cw * scale);
    const fh = Math.max(1, ch * scale);
    after.style.width = `${fw}px`;
    after.style.height = `${fh}px`;
    const iw = fw / (box[2] - box[0]);
    const ih = fh / (box[3] - box[1]);
    afterImg.style.width = `${iw}px`;
    afterImg.style.height = `${ih}px`;
    afterImg.style.left = `${-box[0] * iw}px`;
    afterImg.style.top = `${-box[1] * ih}px`;
  }

  const MIN = 0.03;
  let drag = null;

  function pointer(e) {
    const r = largeImg.getBoundingClientRect();
    return [Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (e.clientY - r.top) / r.height))];
  }

  editor.addEventListener("pointerdown", (e) => {
    const p = current();
    if (!p || !shown(p)) return;
    e.preventDefault();
    editor.setPointerCapture(e.pointerId);
    drag = { handle: e.target.dataset.h || "move", start: pointer(e), box: shown(p).slice(), k: aspect(p) };
  });
  editor.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const [x, y] = pointer(e);
    state.edit = drag.handle === "move"
      ? moved(drag.box, x - drag.start[0], y - drag.start[1])
      : resized(drag.box, drag.handle, x, y, drag.k);
    renderLarge();
  });
  const endDrag = () => {
    if (!drag) return;
    drag = null;
    const p = current();
    if (p && state.edit) {
      refresh(p);
      message(`${visible(p.name)}: adjusted — Enter saves it as your crop, Esc drops it`);
    }
  };
  editor.addEventListener("pointerup", endDrag);
  editor.addEventListener("pointercancel", endDrag);

  function moved(b, dx, dy) {
    const w = b[2] - b[0];
    const h = b[3] - b[1];
    const l = Math.min(Math.max(b[0] + dx, 0), 1 - w);
    const t = Math.min(Math.max(b[1] + dy, 0), 1 - h);
    return [l, t, l + w, t + h];
  }

  function resized(b, handle, x, y, k) {
    // Move the dragged edges to the pointer; with a locked ratio k (normalized w/h) keep the shape, anchored at
    // the opposite corner (corner handles) or the opposite edge's middle (edge handles), inside the image.
    let [l, t, r, btm] = b;
    const west = handle.includes("w");
    const east = handle.includes("e");
    const north = handle.includes("n");
    const south = handle.includes("s");
    if (west) l = Math.min(x, r - MIN);
    if (east) r = Math.max(x, l + MIN);
    if (north) t = Math.min(y, btm - MIN);
    if (south) btm = Math.max(y, t + MIN);
    if (!k) return [l, t, r, btm];
    let w = r - l;
    let h = btm - t;
    const horizontal = west || east;
    const vertical = north || south;
    if (horizontal && vertical) {
      if (w / h > k) w = h * k; else h = w / k;
    } else if (horizontal) {
      h = w / k;
    } else {
      w = h * k;
    }
    const ax = west ? b[2] : east ? b[0] : (b[0] + b[2]) / 2;
    const ay = north ? b[3] : south ? b[1] : (b[1] + b[3]) / 2;
    const maxW = west ? ax : east ? 1 - ax : 2 * Math.min(ax, 1 - ax);
    const maxH = north ? ay : south ? 1 - ay : 2 * Math.min(ay, 1 - ay);
    const s = Math.min(1, maxW / w, maxH / h);
    w *= s;
    h *= s;
    l = west ? ax - w : east ? ax : ax - w / 2;
    t = north ? ay - h : south ? ay : ay - h / 2;
    return [l, t, l + w, t + h];
  }

  // --- wiring ---

  grid.addEventListener("click", (e) => {
    const fig = e.target.closest("figure.card");
    if (fig) select(state.index.get(Number(fig.dataset.id)));
  });
  grid.addEventListener("dblclick", (e) => {
    if (e.target.closest("figure.card")) openLarge();
  });
  $("undo-button").addEventListener("click", () => undo());
  $("ratio-picker").addEventListener("change", (e) => { setRatio(e.target.value); e.target.blur(); });
  $("filter").addEventListener("change", (e) => {
    state.filter = e.target.value;
    for (const p of state.photos) { const f = cardOf(p); if (f) f.hidden = !matches(p); }
    const first = state.photos.findIndex(matches);
    if (current() && !matches(current()) && first >= 0) select(first);
    e.target.blur();  // the keys are for the grid again
    loadNext();  // fewer cards shown: the next page may be needed to fill the screen
  });
  $("help-button").addEventListener("click", () => $("keys").classList.toggle("shown"));
  $("large-accept").addEventListener("click", () => accept(false));
  $("large-reject").addEventListener("click", () => reject());
  $("large-close").addEventListener("click", () => closeLarge());
  $("large-zoom").addEventListener("click", () => openZoom());
  $("zoom-button").addEventListener("click", (e) => { e.target.blur(); openZoom(); });
  $("zoom-close").addEventListener("click", () => closeZoom());
  $("show-subject").addEventListener("change", (e) => { setShowSubject(e.target.checked); e.target.blur(); });
  window.addEventListener("resize", () => { if (state.large) renderLarge(); renderZoom(); });
  largeImg.addEventListener("load", () => { if (state.large) renderLarge(); });

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) {
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
      return;
    }
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (state.zoom) {
      // The 100% view only looks: arrows pan, Z or Esc leave it; decisions wait for the grid or the large view.
      const zoomKeys = {
        z: () => closeZoom(),
        Escape: () => closeZoom(),
        s: () => setShowSubject(!state.showSubject),
        ArrowRight: () => panBy(1, 0),
        ArrowLeft: () => panBy(-1, 0),
        ArrowDown: () => panBy(0, 1),
        ArrowUp: () => panBy(0, -1),
      }[key];
      if (zoomKeys) {
        e.preventDefault();
        zoomKeys();
      }
      return;
    }
    const handled = {
      Enter: () => accept(e.shiftKey),
      a: () => accept(e.shiftKey),
      x: () => reject(),
      n: () => nextAlternative(e.shiftKey ? -1 : 1),
      Tab: () => nextAlternative(e.shiftKey ? -1 : 1),
      r: () => cycleRatio(e.shiftKey ? -1 : 1),
      u: () => undo(),
      ArrowRight: () => step(1),
      ArrowLeft: () => step(-1),
      ArrowDown: () => step(state.large ? 1 : columns()),
      ArrowUp: () => step(-(state.large ? 1 : columns())),
      j: () => step(1),
      k: () => step(-1),
      " ": () => (state.large ? closeLarge() : openLarge()),
      v: () => (state.large ? closeLarge() : openLarge()),
      Escape: () => closeLarge(),
      z: () => openZoom(),
      s: () => setShowSubject(!state.showSubject),
      "?": () => $("keys").classList.toggle("shown"),
    }[key];
    if (handled) {
      e.preventDefault();
      handled();
    }
  });

  async function start() {
    try {
      const s = await api("GET", "api/state");
      state.ratios = s.ratios;
      $("ratio-picker").replaceChildren(...s.ratios.map((r) => { const o = el("option", "", r); o.value = r; return o; }));
      state.pageSize = s.page_size;
      $("summary").textContent = summaryText(s);
      if (!s.total) message("no photos with suggestions under these folders");
    } catch (e) {
      message(`cannot reach pic: ${e.message}`, true);
      return;
    }
    await loadNext();
    new IntersectionObserver((entries) => {
      if (entries.some((x) => x.isIntersecting)) loadNext();
    }, { rootMargin: "1200px" }).observe($("sentinel"));
    document.body.dataset.ready = "1";
  }
  start();
})();
