// softserve console: plain JavaScript, no build step, no third-party code. It talks only to the
// public API (the same endpoints every client uses). The token lives in this page's memory only.
"use strict";

const $ = (id) => document.getElementById(id);
const SIDE = 28, N = SIDE * SIDE;
const state = { token: "", models: [], pixels: new Uint8ClampedArray(N), truth: null, job: null,
                events: null, timers: [], asked: 0, listed: 0, image: null, notLoaded: {},
                versions: new Map() };

// --- the API -------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status; this.code = error.code; this.details = error.details || [];
  }
}

async function api(method, path, body, withToken = false) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (withToken && state.token) headers["Authorization"] = `Bearer ${state.token}`;
  const response = await fetch(path, { method, headers,
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = null; }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;  // CSSOM: what the CSP allows
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const pct = (p) => `${(100 * p).toFixed(1)}%`;
const fixed = (v, digits = 4) => (typeof v === "number" ? v.toFixed(digits) : "–");
function showError(target, error) { $(target).textContent = error ? error.message : ""; }
const needsToken = (error) => error.status === 401 || error.status === 403;
function tokenError(error) {  // the API's message, and where the token goes
  if (!needsToken(error)) return error;
  $("token").focus();
  return new Error(`${error.message} (enter the API token at the top)`);
}

// --- pages ---------------------------------------------------------------------------------------

const PAGES = ["try", "models", "train", "service"];
function route() {
  const page = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : "try";
  for (const name of PAGES) $(`page-${name}`).hidden = name !== page;
  for (const link of document.querySelectorAll("nav a[data-page]")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  state.timers.forEach((slot) => clearTimeout(slot.timer));
  state.timers = [];
  lastCounts = null;
  if (page === "models") renderModels();
  if (page === "train") every(renderJobs, 3000);
  if (page === "service") every(renderService, 2000);
}

function every(work, ms) {  // now, then again ms after each run ends: runs never overlap
  const slot = { timer: null };
  const run = async () => {
    await work();
    if (state.timers.includes(slot)) slot.timer = setTimeout(run, ms);
  };
  slot.timer = setTimeout(run, 0);
  state.timers.push(slot);
}

// --- Try -----------------------------------------------------------------------------------------

const draw = () => $("draw");
function paint() {
  const image = new ImageData(SIDE, SIDE);
  for (let i = 0; i < N; i++) {
    const v = state.pixels[i];
    image.data.set([v, v, v, 255], 4 * i);
  }
  $("seen").getContext("2d").putImageData(image, 0, 0);
  const big = draw().getContext("2d");
  big.imageSmoothingEnabled = false;
  big.drawImage($("seen"), 0, 0, draw().width, draw().height);
  $("seen").dataset.pixels = JSON.stringify(Array.from(state.pixels));
}

function stamp(x, y) {  // a soft disc of the brush's radius, in the 28x28 grid, light on dark
  const radius = Number($("brush").value) * 0.75;
  for (let row = Math.floor(y - radius - 1); row <= Math.ceil(y + radius + 1); row++) {
    for (let col = Math.floor(x - radius - 1); col <= Math.ceil(x + radius + 1); col++) {
      if (row < 0 || col < 0 || row >= SIDE || col >= SIDE) continue;
      const d = Math.hypot(col + 0.5 - x, row + 0.5 - y);
      const v = Math.round(255 * Math.min(1, Math.max(0, radius + 0.5 - d)));
      const i = row * SIDE + col;
      if (v > state.pixels[i]) state.pixels[i] = v;
    }
  }
}

function setUpDrawing() {
  const canvas = draw();
  let last = null;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) / box.width * SIDE, (event.clientY - box.top) / box.height * SIDE];
  };
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    state.truth = null; $("truth").textContent = "";
    last = at(event); stamp(...last); paint();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = at(event);
    const steps = Math.max(1, Math.ceil(Math.hypot(next[0] - last[0], next[1] - last[1]) * 3));
    for (let s = 1; s <= steps; s++) {
      stamp(last[0] + (next[0] - last[0]) * s / steps, last[1] + (next[1] - last[1]) * s / steps);
    }
    last = next; paint();
  });
  const end = () => { if (last) { last = null; predict(); } };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("clear").addEventListener("click", () => {
    state.pixels.fill(0); state.truth = null; $("truth").textContent = ""; paint();
    $("answer").replaceChildren(el("p", { class: "muted" }, "Draw something, or load an image."));
  });
}

async function loadImage(blob) {  // resized to 28x28 here: what is shown is exactly what is sent
  showError("try-error", null);
  state.image = blob;
  try {
    const bitmap = await createImageBitmap(blob);
    const small = new OffscreenCanvas(SIDE, SIDE).getContext("2d", { willReadFrequently: true });
    small.imageSmoothingQuality = "high";
    small.drawImage(bitmap, 0, 0, SIDE, SIDE);
    const rgba = small.getImageData(0, 0, SIDE, SIDE).data;
    const invert = $("invert").checked;
    for (let i = 0; i < N; i++) {  // ITU-R 601 luma, as Pillow's "L" mode
      const v = Math.round(0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]);
      state.pixels[i] = invert ? 255 - v : v;
    }
    state.truth = null; $("truth").textContent = "";
    paint(); await predict();
  } catch (error) {
    showError("try-error", new Error(`could not read that image: ${error.message}`));
  }
}

async function randomImage() {
  showError("try-error", null);
  try {
    const image = await api("GET", `/datasets/test/random?${new URLSearchParams(chosen())}`);
    state.pixels.set(image.pixels);
    state.truth = image;
    paint(); await predict();
  } catch (error) { showError("try-error", error); }
}

function chosen() {  // the model and version the Try page asks
  const model = $("try-model").value, version = $("try-version").value;
  return { ...(model ? { model } : {}), ...(version ? { version } : {}) };
}

async function predict() {
  if (!$("try-model").value) {
    const why = Object.entries(state.notLoaded).map(([n, r]) => `${n}: ${r}`).join("; ");
    showError("try-error", new Error(`no model is served${why ? `: ${why}` : ""}`));
    return;
  }
  const asked = ++state.asked;  // only the newest answer is shown
  showError("try-error", null);
  try {
    const answer = await api("POST", `/predict?${new URLSearchParams(chosen())}`,
                             { pixels: Array.from(state.pixels) });
    if (asked === state.asked) showAnswer(answer);
  } catch (error) {
    if (asked !== state.asked) return;
    showError("try-error", error);
    $("answer").replaceChildren();
  }
}

function showAnswer(answer) {
  const found = state.models.find((m) => m.name === answer.model);
  const row = state.versions.get(`${answer.model} ${answer.version}`);  // the version's own names
  const names = (row && row.class_names) || (found ? found.class_names : []);
  const first = answer.predictions[0];
  const probabilities = first.probabilities !== undefined
    ? first.probabilities : [1 - first.probability, first.probability];
  const top = first.label;
  const bars = el("ul", { class: "bars", "aria-label": "Probability of every class" },
    probabilities.map((p, i) => el("li", { class: i === top ? "top" : "" },
      el("span", {}, names[i] ?? `class ${i}`),
      el("span", { class: "track", "aria-hidden": "true" },
        el("span", { class: "fill", style: `width:${(100 * p).toFixed(2)}%` })),
      el("span", { class: "value" }, pct(p)))));
  bars.querySelectorAll(".fill").forEach((fill, i) => { fill.style.width = `${100 * probabilities[i]}%`; });
  const ood = first.ood;
  const trust = ood === null || ood === undefined ? el("p", { class: "muted" }, "Not assessed for unusual inputs.")
    : ood.flag ? el("p", { class: "bad" }, `Unusual input (score ${ood.score}): ${ood.reasons.join("; ")}`)
    : el("p", { class: "muted" }, `Looks like the training images (score ${ood.score}).`);
  const result = el("div", { id: "result", "data-probabilities": JSON.stringify(probabilities),
                             "data-label": String(top), "data-version": answer.version },
    el("p", {}, el("strong", {}, first.class_name), ` at ${pct(probabilities[top])}`),
    el("p", { class: "muted" }, `${answer.model} version ${answer.version}`), trust, bars);
  $("answer").replaceChildren(result);
  if (state.truth) {
    const truth = state.truth, expected = truth.expected;
    const said = `Test image ${truth.index}: really ${truth.class_name}`;
    if (!expected) {
      $("truth").replaceChildren(el("span", {}, `${said}, a class this model has no answer for.`));
    } else {
      const right = expected.label === top;
      const want = expected.class_name === truth.class_name ? "" : ` (${expected.class_name} to this model)`;
      $("truth").replaceChildren(el("span", { class: right ? "good" : "bad" },
        `${said}${want}; the model is ${right ? "right" : "wrong"}.`));
    }
  }
}

async function fillVersions() {
  const select = $("try-version");
  const model = $("try-model").value, previous = select.value;
  const listed = ++state.listed;  // a slower, older listing must not land over a newer one
  const options = [el("option", { value: "" }, "active")];
  if (model) {
    try {
      const found = await api("GET", `/models/${encodeURIComponent(model)}/versions`);
      for (const row of found.versions) {
        state.versions.set(`${model} ${row.version}`, row);
        options.push(el("option", { value: row.version, disabled: Boolean(row.problem) },
          `${row.version}${row.active ? " (active)" : ""} · ${fixed(row.test_accuracy, 3)}`));
      }
    } catch (error) { showError("try-error", error); }
  }
  if (listed !== state.listed) return;
  select.replaceChildren(...options);
  if (options.some((o) => o.value === previous && !o.disabled)) select.value = previous;
}

async function loadModels() {
  const listed = await api("GET", "/models");
  state.models = listed.models;
  state.notLoaded = listed.not_loaded || {};
  const select = $("try-model");
  const previous = select.value;
  select.replaceChildren(...state.models.map((m) => el("option", { value: m.name }, `${m.name} (${m.kind})`)));
  if (state.models.some((m) => m.name === previous)) select.value = previous;
  else if (state.models.some((m) => m.name === "softmax")) select.value = "softmax";
  await fillVersions();
}

// --- charts ------------------------------------------------------------------------------------

const COLOURS = ["#0a58a8", "#b3261e", "#1a7f37", "#8250df", "#9a6700", "#4f5863"];
function lineChart(series, { title, yMax = null }) {  // series: [{name, points: [[x, y], ...]}]
  const W = 480, H = 220, L = 42, R = 10, T = 10, B = 28;
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const x0 = Math.min(1, ...xs), x1 = Math.max(2, ...xs);
  const y0 = Math.min(0, ...ys), y1 = yMax ?? Math.max(1e-9, ...ys) * 1.05;
  const X = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img"); svg.setAttribute("aria-label", title);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node); return node;
  };
  add("line", { x1: L, y1: Y(y0), x2: W - R, y2: Y(y0), stroke: "#c9d1d9" });
  add("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#c9d1d9" });
  add("text", { x: 4, y: Y(y1) + 4 }, y1.toFixed(2));
  add("text", { x: 4, y: Y(y0) }, y0.toFixed(2));
  add("text", { x: L, y: H - 8 }, `epoch ${x0}`);
  add("text", { x: W - R - 50, y: H - 8 }, `epoch ${x1}`);
  series.forEach((s, i) => {
    if (!s.points.length) return;
    add("polyline", { fill: "none", stroke: COLOURS[i % COLOURS.length], "stroke-width": 2,
                      points: s.points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(" ") });
    for (const [x, y] of s.points) add("circle", { cx: X(x), cy: Y(y), r: 2.5, fill: COLOURS[i % COLOURS.length], "data-series": s.name });
  });
  const legend = el("div", { class: "legend" }, series.map((s, i) =>
    el("span", { style: `--c:${COLOURS[i % COLOURS.length]}` }, s.name)));
  legend.querySelectorAll("span").forEach((span, i) => span.style.setProperty("--c", COLOURS[i % COLOURS.length]));
  return el("figure", {}, el("figcaption", {}, title), svg, legend);
}

function historyCharts(history) {
  const epochs = history.map((h, i) => ({ ...h, x: i + 1 }));
  const pick = (key) => epochs.filter((h) => typeof h[key] === "number").map((h) => [h.x, h[key]]);
  return [
    lineChart([{ name: "train loss", points: pick("train_loss") },
               { name: "validation loss", points: pick("validation_loss") },
               { name: "test loss", points: pick("test_loss") }],
              { title: "Loss per epoch: the selection run, then the refit on all rows" }),
    lineChart([{ name: "train accuracy", points: pick("train_accuracy") },
               { name: "validation accuracy", points: pick("validation_accuracy") },
               { name: "test accuracy", points: pick("test_accuracy") }], { title: "Accuracy per epoch", yMax: 1 }),
  ];
}

// --- Models --------------------------------------------------------------------------------------

const METRICS = ["loss", "accuracy", "ece", "roc_auc", "precision", "recall", "f1"];

async function renderModels() {
  const box = $("models");
  try {
    await loadModels();
    const cards = [];
    for (const summary of state.models) {
      const name = summary.name;
      const [detail, versions] = await Promise.all([
        api("GET", `/models/${encodeURIComponent(name)}`),
        api("GET", `/models/${encodeURIComponent(name)}/versions`)]);
      const splits = Object.entries(summary.metrics || {});
      const keys = METRICS.filter((k) => splits.some(([, m]) => typeof m[k] === "number"));
      const metrics = el("div", { class: "scroll" }, el("table", {},
        el("thead", {}, el("tr", {}, el("th", {}, "split"), keys.map((k) => el("th", {}, k)))),
        el("tbody", {}, splits.map(([split, m]) => el("tr", {}, el("th", {}, split),
          keys.map((k) => el("td", {}, fixed(m[k]))))))));
      const confusion = el("div", { class: "scroll" }, el("p", { class: "muted" }, "Loading the confusion matrix…"));
      api("GET", `/models/${encodeURIComponent(name)}/confusion`).then((c) => {
        confusion.replaceChildren(el("table", { class: "confusion", "aria-label": `Confusion matrix of ${name} on the test set` },
          el("caption", {}, `Test set, rows: true class, columns: predicted (accuracy ${pct(c.accuracy)})`),
          el("thead", {}, el("tr", {}, el("th", {}, ""), c.class_names.map((n) => el("th", {}, n)))),
          el("tbody", {}, c.matrix.map((row, i) => el("tr", {}, el("th", {}, c.class_names[i]),
            row.map((v) => el("td", {}, v)))))));
      }).catch((error) => confusion.replaceChildren(el("p", { class: "error" }, `Confusion matrix: ${error.message}`)));
      const VERSION_METRICS = summary.kind === "binary" ? ["loss", "accuracy", "roc_auc", "f1"] : ["loss", "accuracy", "ece"];
      const rows = versions.versions.map((row) => {
        const error = el("span", { class: "error" });
        const button = row.active ? el("span", { class: "muted" }, "active")
          : row.problem ? el("span", { class: "bad" }, row.problem)
          : el("button", { type: "button", onclick: () => activate(name, row.version, error) }, `Activate`);
        if (!row.active) button.setAttribute("aria-label", `Activate ${name} version ${row.version}`);
        const test = (row.metrics && row.metrics.test) || {};
        return el("tr", { "data-version": row.version }, el("td", {}, row.version), el("td", {}, row.created_at),
          VERSION_METRICS.map((k) => el("td", {}, fixed(test[k]))), el("td", {}, button, error));
      });
      cards.push(el("article", { class: "panel", "data-model": name },
        el("h3", {}, `${name} (${summary.kind}) · active version `, el("span", { class: "active-version" }, summary.version)),
        summary.problem ? el("p", { class: "bad" }, summary.problem) : null,
        metrics, ...historyCharts(detail.history || []), confusion,
        el("h4", {}, "Kept versions"),
        el("div", { class: "scroll" }, el("table", {},
          el("thead", {}, el("tr", {}, ["version", "created", ...VERSION_METRICS.map((k) => `test ${k}`), ""]
            .map((h) => el("th", {}, h)))),
          el("tbody", {}, rows)))));
    }
    box.replaceChildren(el("div", { class: "cards" }, cards));
  } catch (error) { box.replaceChildren(el("p", { class: "error" }, error.message)); }
}

async function activate(name, version, errorNode) {
  errorNode.textContent = "";
  try {
    await api("POST", `/models/${encodeURIComponent(name)}/activate`, { version }, true);
    await renderModels();
    const heading = document.querySelector(`article[data-model="${CSS.escape(name)}"] h3`);
    if (heading) { heading.tabIndex = -1; heading.focus(); }  // focus stays with the model
  } catch (error) {
    errorNode.textContent = tokenError(error).message;
  }
}

// --- Train ---------------------------------------------------------------------------------------

const NUMBERS = ["epochs", "batch_size", "seed", "learning_rate", "l2"];
function trainBody(form) {  // numbers as typed: the API says what is wrong with them
  const body = { model: form.model.value };
  for (const key of NUMBERS) {
    const raw = form[key].value.trim();
    const number = Number(raw);
    if (raw !== "") body[key] = Number.isFinite(number) ? number : raw;
  }
  for (const key of ["positive", "negative"]) {
    const raw = form[key].value.trim();
    if (raw !== "") body[key] = raw.split(",").map((s) => s.trim()).filter(Boolean);
  }
  if (form.force.checked) body.force = true;
  return body;
}

async function submitTraining(event) {
  event.preventDefault();
  const form = event.target;
  for (const span of form.querySelectorAll(".error[data-for]")) span.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  showError("train-error", null);
  try {
    const job = await api("POST", "/train", trainBody(form), true);
    watchJob(job);
    renderJobs();
  } catch (error) {
    let first = null;
    for (const detail of Array.isArray(error.details) ? error.details : []) {
      const field = (detail.loc || []).filter((p) => p !== "body")[0];
      const span = field !== undefined && form.querySelector(`.error[data-for="${field}"]`);
      if (span) {
        span.textContent = detail.message;
        const input = form.elements[field];
        if (input) { input.setAttribute("aria-invalid", "true"); first = first || input; }
      }
    }
    if (!first && error.status === 422) {  // a check without a location names its field first
      const field = NUMBERS.concat(["positive", "negative"]).find((f) => error.message.startsWith(`${f} `));
      const span = field && form.querySelector(`.error[data-for="${field}"]`);
      if (span) {
        span.textContent = error.message;
        form.elements[field].setAttribute("aria-invalid", "true");
        first = form.elements[field];
      }
    }
    if (first) first.focus();
    else showError("train-error", tokenError(error));
  }
}

function watchJob(job) {
  if (state.events) state.events.close();
  state.job = { id: job.job_id, history: [] };
  $("job").hidden = false;
  $("job-title").textContent = `Job ${job.job_id.slice(0, 8)} (${job.model})`;
  $("job").dataset.jobId = job.job_id;
  $("job-cancel").disabled = false;
  $("job-progress").value = 0;
  showError("job-error", null);
  showJob(job);
  const source = new EventSource(`/train/${job.job_id}/events`);
  state.events = source;
  const settle = async (note) => {  // the stream is over: the job's record has the rest
    source.close();
    if (note) showError("job-error", new Error(note));
    try {
      const record = await api("GET", `/train/${job.job_id}`);
      showJob(record);
      if (record.promoted) await loadModels();  // the Try page answers with the new version
    } catch (error) { showError("job-error", error); }
    renderJobs();
  };
  const onEvent = (message) => {
    const view = JSON.parse(message.data);
    showJob(view);
    if (message.type === "end") settle(null);
    if (message.type === "shutdown") settle(view.message || "the server is shutting down");
  };
  for (const name of ["progress", "end", "shutdown", "status"]) source.addEventListener(name, onEvent);
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED && state.events === source) {
      state.events = null;
      settle("the job's event stream closed; its state below is from its record");
    }
  };
}

function showJob(view) {
  const job = state.job;
  if (!job || view.job_id !== job.id) return;
  if (view.progress && typeof view.progress.fraction === "number") $("job-progress").value = view.progress.fraction;
  const latest = view.latest;
  if (latest && !job.history.some((h) => h.phase === latest.phase && h.epoch === latest.epoch)) {
    job.history.push(latest);
  }
  for (const h of view.history || []) {
    if (!job.history.some((k) => k.phase === h.phase && k.epoch === h.epoch)) job.history.push(h);
  }
  const done = ["succeeded", "failed", "cancelled"].includes(view.status);
  if (done) { $("job-progress").value = 1; $("job-cancel").disabled = true; }
  const outcome = view.status === "succeeded"
    ? (view.promoted ? `succeeded, promoted: version ${view.version} now answers`
      : `succeeded, not promoted: ${view.promotion_reason || "the active version stays"}`)
    : ["failed", "cancelled"].includes(view.status) ? `${view.status}: ${view.error || "see the job"}`
    : view.status;
  if ($("job-status").textContent !== outcome) $("job-status").textContent = outcome;  // read once
  $("job").dataset.status = view.status;
  const points = job.history.map((h, i) => ({ ...h, i: i + 1 }));
  $("job-chart").dataset.points = String(points.length);
  $("job-chart").replaceChildren(lineChart([
    { name: "train loss", points: points.map((h) => [h.i, h.train_loss]).filter((p) => typeof p[1] === "number") },
    { name: "test loss", points: points.map((h) => [h.i, h.test_loss]).filter((p) => typeof p[1] === "number") },
    { name: "test accuracy", points: points.map((h) => [h.i, h.test_accuracy]).filter((p) => typeof p[1] === "number") },
  ], { title: "This job, epoch by epoch" }));
}

async function cancelJob() {
  if (!state.job) return;
  showError("job-error", null);
  try {
    const view = await api("DELETE", `/train/${state.job.id}`, undefined, true);
    showJob(view);
  } catch (error) {
    showError("job-error", tokenError(error));
  }
}

async function renderJobs() {
  try {
    const listed = await api("GET", "/train");
    const rows = listed.jobs.map((j) => el("tr", { "data-job": j.job_id, "data-status": j.status },
      el("td", {}, j.job_id.slice(0, 8)), el("td", {}, j.model), el("td", {}, j.status),
      el("td", {}, j.created_at), el("td", {}, j.promoted ? `promoted ${j.version}` : (j.promotion_reason || j.error || ""))));
    $("jobs").replaceChildren(el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, ["job", "model", "state", "created", "outcome"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows))));
  } catch (error) { $("jobs").replaceChildren(el("p", { class: "error" }, error.message)); }
}

// --- Service -------------------------------------------------------------------------------------

let lastCounts = null;
async function renderService() {
  try {
    const now = performance.now();  // when asked, not when answered
    const [metrics, ready] = await Promise.all([api("GET", "/metrics"), api("GET", "/health/ready").catch((error) => ({
      status: `not ready: ${error.message}`,
      models: (error.details && error.details.models) || {}, problems: (error.details && error.details.problems) || {},
    }))]);
    const rate = (row) => {
      if (!lastCounts || !(lastCounts.rows.has(`${row.method} ${row.route}`))) return "–";
      const seconds = (now - lastCounts.at) / 1000;
      return ((row.count - lastCounts.rows.get(`${row.method} ${row.route}`)) / seconds).toFixed(1);
    };
    const requests = el("div", { class: "scroll" }, el("table", { "aria-label": "Requests by route" },
      el("thead", {}, el("tr", {}, ["route", "requests", "per second", "status", "p50 ms", "p90 ms", "p99 ms"].map((h) => el("th", {}, h)))),
      el("tbody", {}, metrics.requests.map((r) => el("tr", {}, el("td", {}, `${r.method} ${r.route}`), el("td", {}, r.count),
        el("td", {}, rate(r)), el("td", {}, Object.entries(r.by_status).map(([k, v]) => `${k}: ${v}`).join(", ")),
        el("td", {}, fixed(r.p50_ms, 2)), el("td", {}, fixed(r.p90_ms, 2)), el("td", {}, fixed(r.p99_ms, 2)))))));
    lastCounts = { at: now, rows: new Map(metrics.requests.map((r) => [`${r.method} ${r.route}`, r.count])) };
    const jobs = el("p", {}, Object.entries(metrics.jobs.counts).map(([k, v]) => `${k}: ${v}`).join(" · "));
    const health = el("ul", {}, Object.entries(ready.models || {}).map(([name, version]) =>
      el("li", {}, `${name}: serving ${version}${ready.problems && ready.problems[name] ? ` — ${ready.problems[name]}` : ""}`)));
    $("service").replaceChildren(
      el("div", { class: "panel" }, el("h3", {}, `Health: ${ready.status}`), health),
      el("div", { class: "panel" }, el("h3", {}, "Jobs by state"), jobs),
      el("div", { class: "panel" }, el("h3", {}, "Requests since start (all workers)"), requests));
  } catch (error) { $("service").replaceChildren(el("p", { class: "error" }, error.message)); }
}

// --- start ---------------------------------------------------------------------------------------

function start() {
  $("token").addEventListener("input", (event) => { state.token = event.target.value.trim(); });
  setUpDrawing();
  paint();
  $("file").addEventListener("change", (event) => { if (event.target.files[0]) loadImage(event.target.files[0]); });
  const canvas = draw();
  canvas.addEventListener("dragover", (event) => event.preventDefault());
  canvas.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = [...event.dataTransfer.files].find((f) => /^image\//.test(f.type));
    if (file) loadImage(file);
    else showError("try-error", new Error("drop a PNG or JPEG image"));
  });
  document.addEventListener("paste", (event) => {
    const item = [...(event.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (item) loadImage(item.getAsFile());
  });
  $("random").addEventListener("click", randomImage);
  $("invert").addEventListener("change", () => { if (state.image) loadImage(state.image); });
  for (const name of ["dragover", "drop"]) {  // a file dropped beside the canvas must not replace the page
    document.addEventListener(name, (event) => event.preventDefault());
  }
  $("try-model").addEventListener("change", async () => { await fillVersions(); predict(); });
  $("try-version").addEventListener("change", predict);
  $("train-form").addEventListener("submit", submitTraining);
  $("job-cancel").addEventListener("click", cancelJob);
  window.addEventListener("hashchange", route);
  loadModels().catch((error) => showError("try-error", error));
  route();
  document.body.dataset.ready = "true";
}

start();
