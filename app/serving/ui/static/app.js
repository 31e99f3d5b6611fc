// foldserve's comparison page. Plain JavaScript, no library, no other origin. Everything that comes from a
// manifest or an answer (names, labels, reasons) is written with textContent or as an attribute, never as HTML.
"use strict";

const VARIANTS = ["collapsed", "original"];
const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const state = { models: new Map(), model: null, last: null, stats: null };

const $ = (id) => document.getElementById(id);

// An element with text children only: strings become text nodes through append().
function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children);
  return node;
}

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  return node;
}

function count(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e9) return (n / 1e9).toFixed(2) + " G";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " k";
  return String(n);
}

const sci = (x) => (x === null || x === undefined ? "–" : Number(x).toExponential(1));
const ms = (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(x < 1 ? 3 : 1) + " ms");

// ---- models ------------------------------------------------------------------------------------------------

function row(list, term, ...values) {
  list.append(el("dt", "", term), el("dd", "", ...values));
}

function modelCard(m) {
  const card = el("article", "card", el("h3", "", m.name));
  card.dataset.model = m.name;
  const list = el("dl", "");
  row(list, "status", el("span", "status " + m.status, m.status), m.reason ? " " + m.reason : "");
  const report = m.simplification || {};
  row(list, "simplification", report.kind || "–");
  const v = m.variants;
  if (v) {
    row(list, "parameters", count(v.original.parameters) + " → " + count(v.collapsed.parameters));
    row(list, "MACs / image", count(v.original.macs) + " → " + count(v.collapsed.macs));
    row(list, "runtime", v.original.runtime + " → " + v.collapsed.runtime);
  }
  row(list, "verification", "max abs " + sci(report.max_abs_error) + ", rel " + sci(report.max_rel_error) +
    ", top-1 agreement " + (report.top1_agreement === undefined ? "–" : report.top1_agreement));
  row(list, "speedup at load", m.forward_speedup ? m.forward_speedup.toFixed(1) + "× (forward pass)" : "–");
  if (m.labels) {
    const shown = m.labels.slice(0, 5).join(", ") + (m.labels.length > 5 ? ", …" : "");
    row(list, "labels", el("span", "labels", shown), " (" + m.labels.length + ")");
  }
  card.append(list);
  return card;
}

async function loadModels() {
  const response = await fetch("/models");
  const body = await response.json();
  const cards = $("models");
  cards.replaceChildren(...body.models.map(modelCard));
  $("models-status").textContent = body.models.length ? "" : "No model in the store.";
  const select = $("model");
  const previous = select.value || body.default;
  select.replaceChildren();
  for (const m of body.models) {
    state.models.set(m.name, m);
    const option = el("option", "", m.name + (m.status === "ready" ? "" : " (" + m.status + ")"));
    option.value = m.name;
    option.disabled = m.status !== "ready";
    select.append(option);
  }
  if (previous && state.models.has(previous)) select.value = previous;
  chooseModel();
}

function chooseModel() {
  state.model = state.models.get($("model").value) || null;
  const input = state.model && state.model.input;
  // a pad for the 28x28 single-channel digit models
  $("pad").hidden = !(input && input.channels === 1 && input.height === 28 && input.width === 28);
  $("live-model").textContent = state.model ? "Model: " + state.model.name + "." : "";
  if (state.stats) drawCharts();
}

// ---- asking both variants ---------------------------------------------------------------------------------

async function ask(variant, image) {
  const query = new URLSearchParams({
    model: state.model.name, collapsed: String(variant === "collapsed"), top_k: $("top-k").value || "3",
  });
  const form = new FormData();
  form.append("file", image, "image");
  const response = await fetch("/predict?" + query, { method: "POST", body: form });
  const body = await response.json();
  return response.ok ? { ok: true, body } : { ok: false, status: response.status, error: body.error || {} };
}

async function classify(image) {
  if (!state.model) return;
  state.last = image;
  $("agreement").textContent = "Asking both variants…";
  const answers = {};
  for (const variant of VARIANTS) {  // one after the other, so neither's timings include the other's work
    try {
      answers[variant] = await ask(variant, image);
    } catch (error) {
      answers[variant] = { ok: false, status: 0, error: { code: "network", message: String(error) } };
    }
    renderAnswer(variant, answers[variant]);
  }
  renderAgreement(answers.collapsed, answers.original);
}

function renderAnswer(variant, answer) {
  const box = $("answer-" + variant);
  const title = el("h3", "", variant);
  if (!answer.ok) {
    box.replaceChildren(title, el("p", "error", answer.status + " " + (answer.error.code || "") + ": " +
      (answer.error.message || "")));
    return;
  }
  const body = answer.body;
  if (body.simplification) title.append(el("small", "", " " + body.simplification));
  const best = body.predictions[0];
  const top = el("p", "top", el("span", "label", best.label), " ", el("span", "probability",
    (best.probability * 100).toFixed(2) + "%"));
  const bars = el("ol", "bars");
  for (const score of best.top_k) {
    const fill = el("span", "fill");
    fill.style.width = (score.probability * 100).toFixed(2) + "%";  // CSSOM, allowed by the CSP
    const item = el("li", "", el("span", "bar-label", score.label), el("span", "bar", fill),
      el("span", "bar-value", score.probability.toFixed(4)));
    bars.append(item);
  }
  const timings = el("dl", "timings");
  for (const stage of ["decode", "queue", "inference", "total"]) row(timings, stage, ms(body.timings_ms[stage]));
  box.replaceChildren(title, top, bars, timings);
  box.dataset.label = best.label;
}

function renderAgreement(a, b) {
  const out = $("agreement");
  out.className = "agreement";
  if (!a.ok || !b.ok) {
    out.textContent = "One variant did not answer.";
    return;
  }
  const x = a.body.predictions[0], y = b.body.predictions[0];
  const agree = x.index === y.index;
  const diff = Math.abs(x.probability - y.probability);
  out.classList.add(agree ? "agree" : "disagree");
  out.textContent = (agree ? "They agree: " + x.label : "They disagree: " + x.label + " / " + y.label) +
    " (top-1 probability differs by " + diff.toExponential(1) + ")";
}

function setupInputs() {
  $("model").addEventListener("change", () => {
    chooseModel();
    if (state.last) classify(state.last);
  });
  $("file").addEventListener("change", (event) => chooseFile(event.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    chooseFile(event.dataTransfer.files[0]);
  });
  setupPad();
}

function chooseFile(file) {
  if (!file) return;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  classify(file);
}

function setupPad() {
  const canvas = $("canvas");
  const pen = canvas.getContext("2d");
  const clear = () => { pen.fillStyle = "#000"; pen.fillRect(0, 0, canvas.width, canvas.height); };
  clear();
  let drawing = false;
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    pen.strokeStyle = "#fff"; pen.lineWidth = 22; pen.lineCap = pen.lineJoin = "round";
    pen.beginPath();
    pen.moveTo(...at(event));
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    pen.lineTo(...at(event));
    pen.stroke();
  });
  const stop = () => { drawing = false; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  $("clear").addEventListener("click", clear);
  $("send-drawing").addEventListener("click", () => canvas.toBlob((blob) => blob && classify(blob), "image/png"));
}

// ---- live charts --------------------------------------------------------------------------------------------

async function poll() {
  try {
    if (!document.hidden) {
      const response = await fetch("/ui/stats");
      if (response.ok) {
        state.stats = await response.json();
        drawCharts();
      }
    }
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function drawCharts() {
  const stats = state.stats;
  const variants = (state.model && stats.models[state.model.name]) || {};
  const lines = [];
  for (const variant of VARIANTS) {
    const series = variants[variant] && variants[variant].series;
    if (!series) continue;
    const toMs = (values) => values.map((v) => (v === null ? null : v * 1e3));
    lines.push({ variant, kind: "p50", dash: false, time: series.time, values: toMs(series.p50_s) });
    lines.push({ variant, kind: "p99", dash: true, time: series.time, values: toMs(series.p99_s) });
  }
  plot($("chart-latency"), stats, lines, (v) => v.toFixed(v < 1 ? 2 : 1));
  legend($("legend-latency"), lines, (v) => ms(v));
  const rates = VARIANTS.filter((v) => variants[v]).map((variant) => ({
    variant, kind: "rps", dash: false, time: variants[variant].series.time, values: variants[variant].series.rps,
  }));
  plot($("chart-rps"), stats, rates, (v) => v.toFixed(v < 10 ? 1 : 0));
  legend($("legend-rps"), rates, (v) => v.toFixed(1) + " /s");
}

function plot(chart, stats, lines, tick) {
  // one unit a CSS pixel, so that the ticks keep their size on a phone
  const W = Math.max(280, Math.round(chart.clientWidth || 600)), H = 220, left = 48, right = 12, top = 8, bottom = 24;
  chart.setAttribute("viewBox", "0 0 " + W + " " + H);
  const all = lines.flatMap((l) => l.values.filter((v) => v !== null));
  const high = niceCeiling(Math.max(0, ...all));
  // the span shown grows with the data, from one minute to the whole window
  const first = Math.min(stats.time, ...lines.flatMap((l) => l.time.slice(0, 1)));
  const span = Math.min(stats.window_s, Math.max(60, Math.ceil((stats.time - first) / 60) * 60));
  const x = (t) => left + (W - left - right) * (1 - (stats.time - t) / span);
  const y = (v) => top + (H - top - bottom) * (1 - v / high);
  const nodes = [];
  for (let i = 0; i <= 4; i++) {
    const v = (high * i) / 4;
    nodes.push(svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }));
    const label = svg("text", { x: left - 4, y: y(v) + 4, class: "tick", "text-anchor": "end" });
    label.textContent = tick(v);
    nodes.push(label);
  }
  const every = span <= 60 ? 15 : 60;
  for (let ago = span; ago >= 0; ago -= every) {
    const anchor = ago === 0 ? "end" : ago === span ? "start" : "middle";
    const label = svg("text", { x: x(stats.time - ago), y: H - 6, class: "tick", "text-anchor": anchor });
    label.textContent = ago === 0 ? "now" : "−" + (ago % 60 ? ago + " s" : ago / 60 + " min");
    nodes.push(label);
  }
  for (const line of lines) {
    let d = "", pen = "M", points = 0;
    line.values.forEach((v, i) => {
      if (v === null || stats.time - line.time[i] > span) { pen = "M"; return; }
      d += pen + x(line.time[i]).toFixed(1) + " " + y(v).toFixed(1) + " ";
      pen = "L";
      points += 1;
    });
    const path = svg("path", { d: d.trim() || "M0 0", class: "line " + line.variant + (line.dash ? " dashed" : "") });
    path.dataset.series = line.variant + "-" + line.kind;
    path.dataset.points = String(points);
    nodes.push(path);
  }
  chart.replaceChildren(...nodes);
}

function niceCeiling(v) {
  if (!(v > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * step).find((c) => c >= v);
}

function legend(list, lines, format) {
  list.replaceChildren(...lines.map((line) => {
    const latest = [...line.values].reverse().find((v) => v !== null);
    const item = el("li", line.variant + (line.dash ? " dashed" : ""), el("span", "swatch"),
      line.variant + " " + line.kind + ": " + (latest === undefined ? "–" : format(latest)));
    item.dataset.series = line.variant + "-" + line.kind;
    return item;
  }));
}

// ---- start --------------------------------------------------------------------------------------------------

setupInputs();
window.addEventListener("resize", () => state.stats && drawCharts());
loadModels().catch((error) => { $("models-status").textContent = "Could not read /models: " + error; });
poll();
