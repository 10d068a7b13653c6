// npformer explore: the page. Plain JavaScript, no library, no network but its own server.
//
// Every number drawn here comes from a JSON endpoint (server.py), computed by the
// Python functions of npformer/explore/views.py; this file only draws them.
// The page's state (model, view, text and each view's choices) lives in the URL,
// so a link or a reload shows the same picture, and the tests open views by URL.
// After each drawing, <body> carries data-ready="yes", data-renders (a counter) and
// the times of the last redraw (data-server-ms, data-roundtrip-ms, data-total-ms).
"use strict";

const VIEWS = ["tokens", "embeddings", "attention", "next", "translate", "classify", "run"];
const DEFAULT_TEXT = {
  "translator": "the big dog sees a small cat .",
  "language model": "the old woman",
  "classifier": "the dog sees a cat .",
};
// Kept in the URL: [name, kind]; kind "int", "num" or "str".
const PARAMS = [["model", "int"], ["view", "str"], ["text", "str"], ["op", "str"],
  ["head", "int"], ["hover", "int"], ["cmp", "str"], ["step", "int"], ["method", "str"],
  ["beam", "int"], ["temperature", "num"], ["top_k", "int"], ["top_p", "num"], ["seed", "int"],
  ["side", "str"], ["token", "int"], ["run", "int"]];

const state = {model: 0, view: "attention", text: null, head: 0, hover: null, step: 0,
  method: "greedy", beam: 4, temperature: 1, top_k: 0, top_p: 1, seed: 0, run: 0};
let info = null; // /api/models
let generation = 0; // the latest render; older answers are dropped
let inflight = null; // AbortController of the latest render's requests
let pollTimer = null;
let runData = null; // the run view's records so far

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ DOM helpers
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  return add(node, ...children);
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(node, attrs);
  return add(node, ...children);
}

// Append children (nodes, text, arrays of them); null, undefined and false are left out.
function add(node, ...children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
}

// A token as shown: a leading space as "␣", a newline as "⏎".
function show(piece) {
  if (piece === "") return "∅";
  return piece.replace(/^ /, "␣").replace(/\n/g, "⏎").replace(/\t/g, "⇥");
}

const fmt = (p, digits = 3) => Number(p).toFixed(digits);

// [min, max] of an array (a loop: a vocabulary can be too long to spread into Math.min)
function extent(values) {
  let low = Infinity, high = -Infinity;
  for (const v of values) {
    if (v < low) low = v;
    if (v > high) high = v;
  }
  return [low, high];
}
const pct = (p) => (100 * p).toFixed(p >= 0.1 ? 1 : 2) + "%";

// Viridis (the colour map of the PNG heatmaps, plots.py), 0 -> dark purple, 1 -> yellow.
const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
function colour(p) {
  const x = Math.min(Math.max(p, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  const c = VIRIDIS[i].map((a, j) => Math.round(a + f * (VIRIDIS[i + 1][j] - a)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// -------------------------------------------------------------------------- API
class ApiError extends Error {}

const timing = {server: 0, roundTrip: 0};

async function api(path, body) {
  const options = {signal: inflight ? inflight.signal : undefined};
  if (body !== undefined) {
    options.method = "POST";
    options.headers = {"Content-Type": "application/json"};
    options.body = JSON.stringify(body);
  }
  const t0 = performance.now();
  const response = await fetch(path, options);
  const data = await response.json();
  timing.roundTrip += performance.now() - t0;
  if (!response.ok) throw new ApiError(data.error || `HTTP ${response.status}`);
  timing.server += data.ms || 0;
  return data;
}

const call = (name, fields) => api(`/api/${name}`, {model: state.model, ...fields});

// ---------------------------------------------------------------- state and URL
function readUrl() {
  const query = new URLSearchParams(location.search);
  for (const [name, kind] of PARAMS) {
    if (!query.has(name)) continue;
    const raw = query.get(name);
    const value = kind === "str" ? raw : Number(raw);
    if (kind !== "str" && !Number.isFinite(value)) continue;
    state[name] = value;
  }
}

function writeUrl() {
  const query = new URLSearchParams();
  for (const [name] of PARAMS) {
    if (state[name] !== null && state[name] !== undefined) query.set(name, state[name]);
  }
  history.replaceState(null, "", `?${query}`);
}

function currentModel() {
  return info.models[state.model];
}

function viewAllowed(view) {
  if (view === "run") return info.runs.length > 0;
  if (!currentModel()) return false;
  const kinds = info.view_kinds[view];
  return !kinds || kinds.includes(currentModel().kind);
}

// ------------------------------------------------------------------ the shell
async function start() {
  readUrl();
  inflight = new AbortController();
  info = await api("/api/models");
  fillModels();
  if (!info.models[state.model]) state.model = 0;
  if (state.text === null) state.text = currentModel() ? DEFAULT_TEXT[currentModel().kind] : "";
  $("text").value = state.text;
  $("text").maxLength = info.limits.text;
  $("text").addEventListener("input", () => {
    state.text = $("text").value;
    render();
  });
  $("model").addEventListener("change", () => switchModel(Number($("model").value)));
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => {
      state.view = button.dataset.view;
      render();
    });
  }
  $("source-close").addEventListener("click", () => { $("source").hidden = true; });
  render();
}

function fillModels() {
  const select = $("model");
  select.replaceChildren(...info.models.map((m, i) =>
    el("option", {value: i}, `${m.label} (${m.kind})`)));
  select.value = state.model;
}

function switchModel(index) {
  const before = currentModel();
  state.model = index;
  if (!before || state.text === DEFAULT_TEXT[before.kind]) {
    state.text = DEFAULT_TEXT[currentModel().kind];
    $("text").value = state.text;
  }
  Object.assign(state, {op: null, head: 0, hover: null, cmp: null, step: 0, side: null,
    token: null});
  render();
}

function describeModel(m) {
  if (!m) return "no model loaded";
  const layers = m.architecture === "encoder-decoder"
    ? `${m.n_encoder_layers}+${m.n_decoder_layers} layers` : `${m.n_decoder_layers || m.n_encoder_layers} layers`;
  const step = m.step !== null && m.step !== undefined ? `, step ${m.step}` : "";
  return `${m.architecture}, d_model ${m.d_model}, ${m.n_heads} heads, ${layers}, ` +
    `${m.n_params.toLocaleString("en")} parameters, ${m.tokenizer} tokenizer ` +
    `(${m.vocab_size} ids)${step}`;
}

async function render() {
  const mine = ++generation;
  if (inflight) inflight.abort();
  inflight = new AbortController();
  if (pollTimer) { clearTimeout(pollTimer); pollTimer = null; }
  if (!VIEWS.includes(state.view) || !viewAllowed(state.view)) {
    state.view = VIEWS.find(viewAllowed) || "tokens";
  }
  writeUrl();
  document.body.dataset.ready = "no";
  document.body.dataset.view = state.view;
  for (const button of document.querySelectorAll("#tabs button")) {
    const view = button.dataset.view;
    button.classList.toggle("active", view === state.view);
    button.disabled = !viewAllowed(view);
    button.title = button.disabled ? (view === "run" ? "start with --run DIR"
      : `needs a ${info.view_kinds[view].join(" or ")}`) : "";
  }
  $("model-info").textContent = describeModel(currentModel());
  $("input-row").hidden = state.view === "run";
  timing.server = 0;
  timing.roundTrip = 0;
  const t0 = performance.now();
  const root = el("div", {class: `view view-${state.view}`});
  try {
    await RENDERERS[state.view](root);
  } catch (err) {
    if (err.name === "AbortError" || mine !== generation) return;
    if (!(err instanceof ApiError)) console.error(err);
    if (mine !== generation) return;
    $("view").replaceChildren();
    $("error").hidden = false;
    $("error").textContent = err.message;
    finish(mine, t0, "error");
    return;
  }
  if (mine !== generation) return; // a newer render took over
  $("error").hidden = true;
  $("view").replaceChildren(root);
  drawCites();
  finish(mine, t0, "yes");
}

function finish(mine, t0, how) {
  const total = performance.now() - t0;
  const body = document.body.dataset;
  body.serverMs = timing.server.toFixed(1);
  body.roundtripMs = timing.roundTrip.toFixed(1);
  body.totalMs = total.toFixed(1);
  body.renders = String(Number(body.renders || 0) + 1);
  body.ready = how;
  $("timing").textContent = state.view === "run" ? "" :
    `server ${timing.server.toFixed(1)} ms · round trip ${timing.roundTrip.toFixed(1)} ms · ` +
    `redrawn in ${total.toFixed(1)} ms`;
}

// ------------------------------------------------------- sources and docs links
function drawCites() {
  const links = info.links[state.view] || [];
  const items = links.map((link) => {
    const label = link.name === link.file ? link.file : `${link.file} · ${link.name}`;
    if (!link.available) return el("span", {class: "cite off", title: "in the repository"}, label);
    return el("a", {href: "#", class: "cite", onclick: (e) => {
      e.preventDefault();
      openSource(link);
    }}, label);
  });
  $("cites").replaceChildren(el("span", {class: "cites-head"}, "computed by / explained in:"),
    ...items);
}

async function openSource(link) {
  const data = await api(`/api/source?file=${encodeURIComponent(link.file)}`);
  const lines = data.text.split("\n");
  const pre = $("source-text");
  pre.replaceChildren(...lines.map((line, i) => el("div", {
    class: "line" + (link.first && i + 1 >= link.first && i + 1 <= link.last ? " hit" : ""),
    id: `L${i + 1}`}, el("span", {class: "ln"}, String(i + 1)), line + "\n")));
  $("source-name").textContent = link.file;
  $("source").hidden = false;
  const first = link.first ? document.getElementById(`L${link.first}`) : null;
  pre.scrollTop = first ? first.offsetTop - pre.offsetTop - 20 : 0;
}

// ======================================================================= views
const RENDERERS = {tokens: viewTokens, embeddings: viewEmbeddings, attention: viewAttention,
  next: viewNext, translate: viewTranslate, classify: viewClassify, run: viewRun};

function note(text) {
  return el("p", {class: "note"}, text);
}

// ---------------------------------------------------------------------- tokens
async function viewTokens(root) {
  const data = await call("tokens", {text: state.text});
  const words = data.words.map((word) => {
    const split = word.pieces.length > 1;
    return el("span", {class: "word" + (split ? " split" : ""),
      title: split ? `one word, ${word.pieces.length} BPE parts` : null},
    word.pieces.map((p, i) => el("span", {class: "piece" + (p.unknown ? " unk" : "") +
        (split && i % 2 ? " odd" : ""), "data-id": p.id},
      el("span", {class: "ptext"}, show(p.piece)), el("span", {class: "pid"}, p.id))));
  });
  const nSplit = data.words.filter((w) => w.pieces.length > 1).length;
  add(root, 
    el("h2", {}, `${data.ids.length} tokens (${data.tokenizer} tokenizer, ${data.vocab_size} ids)`),
    el("div", {class: "words", id: "words"}, words),
    note(data.tokenizer === "bpe"
      ? `${nSplit} of ${data.words.length} words are split into BPE word parts (a box holds one word; ␣ is a space, part of the token).`
      : data.tokenizer === "word" ? "Word tokenizer: one id per whitespace-separated word; a word it never saw is <unk> (red)."
        : "Character tokenizer: one id per character."),
    el("h3", {}, "what the model reads (with the special tokens its task adds)"),
    el("div", {class: "words reads"}, data.model_reads.map((p) =>
      el("span", {class: "piece" + (p.id < 4 ? " special" : "")},
        el("span", {class: "ptext"}, show(p.piece)), el("span", {class: "pid"}, p.id)))),
    data.fits ? null : el("p", {class: "warn"},
      `${data.model_reads.length} tokens: more than this model's max_len ${data.max_len}`));
}

// ------------------------------------------------------------------ embeddings
async function viewEmbeddings(root) {
  const m = currentModel();
  const side = m.embedding_sides.includes(state.side) ? state.side : m.embedding_sides[0];
  state.side = side;
  const data = await call("embeddings", {side});
  let mine = new Set();
  if (side !== "target" && state.text.trim()) {
    try {
      mine = new Set((await call("tokens", {text: state.text})).ids);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
    }
  }
  const W = 720, H = 480, pad = 24, right = 70; // room for the labels of the rightmost points
  const xs = data.x, ys = data.y;
  const [x0, x1] = extent(xs);
  const [y0, y1] = extent(ys);
  const sx = (x) => pad + (x - x0) / (x1 - x0 || 1) * (W - pad - right);
  const sy = (y) => H - pad - (y - y0) / (y1 - y0 || 1) * (H - 2 * pad);
  const labelAll = data.tokens.length <= 400;
  const lines = svg("g", {class: "nb-lines"});
  const points = data.tokens.map((t, i) => svg("g", {class: "pt" + (mine.has(i) ? " mine" : "") +
      (i < 4 ? " special" : ""), "data-id": i, transform: `translate(${sx(xs[i]).toFixed(1)},${sy(ys[i]).toFixed(1)})`},
  svg("circle", {r: mine.has(i) ? 4 : 2.5}),
  labelAll || mine.has(i) ? svg("text", {x: 4, y: -3}, show(t)) : null));
  const plot = svg("svg", {width: W, height: H, class: "scatter", id: "scatter"}, lines, points);
  const panel = el("div", {class: "nb-panel", id: "neighbours"}, note("hover a point: its nearest tokens by cosine similarity in all " +
    `${data.d_model} dimensions`));
  async function hover(id) {
    state.token = id;
    writeUrl();
    const nb = await call("neighbours", {side, id});
    if (state.token !== id) return;
    lines.replaceChildren(...nb.neighbours.map((n) => svg("line", {x1: sx(xs[id]), y1: sy(ys[id]),
      x2: sx(xs[n.id]), y2: sy(ys[n.id])})));
    for (const p of points) p.classList.toggle("hot", Number(p.dataset.id) === id);
    panel.replaceChildren(el("h3", {}, `${show(nb.piece)} (id ${id}): nearest tokens`),
      el("table", {class: "nb"}, nb.neighbours.map((n) => el("tr", {},
        el("td", {}, show(n.piece)), el("td", {class: "num"}, fmt(n.cosine)),
        el("td", {}, el("span", {class: "bar", "data-w": n.cosine}))))));
    for (const bar of panel.querySelectorAll(".bar")) {
      bar.style.width = `${Math.max(0, Number(bar.dataset.w)) * 120}px`;
    }
  }
  plot.addEventListener("mouseover", (e) => {
    const g = e.target.closest(".pt");
    if (g) hover(Number(g.dataset.id)).catch(showError);
  });
  const sides = m.embedding_sides.length > 1 ? el("div", {class: "controls"}, "table: ",
    m.embedding_sides.map((s) => el("label", {}, el("input", {type: "radio", name: "side",
      value: s, checked: s === side, onchange: () => { state.side = s; state.token = null; render(); }}), s))) : null;
  add(root, el("h2", {}, `${data.parameter}: ${data.tokens.length} tokens, projected on their first two principal components`),
    sides,
    note(`The two axes keep ${pct(data.explained[0])} and ${pct(data.explained[1])} of the variance of the ${data.d_model}-dimensional rows: ` +
      "nearby points may be far apart in the full space; the neighbour list uses all dimensions. " +
      (mine.size ? "Larger points: the tokens of your text." : "")),
    el("div", {class: "emb"}, plot, panel));
  if (Number.isInteger(state.token) && state.token >= 0 && state.token < data.tokens.length) {
    await hover(state.token);
  }
}

// ------------------------------------------------------------------ attention
const KIND_NAMES = {self: "self-attention", causal: "causal self-attention", cross: "cross-attention"};

function heatmap(P, queries, keys, opts = {}) {
  // P (T,S) as an SVG grid: rows are queries, columns keys. opts: cell, hover, onhover, id
  const cell = opts.cell || 28;
  const labels = opts.labels !== false;
  const left = labels ? 8 + 7 * Math.max(...queries.map((q) => show(q).length)) : 0;
  const top = labels ? 8 + 6 * Math.max(...keys.map((k) => show(k).length)) : 0;
  const W = left + cell * keys.length, H = top + cell * queries.length;
  const root = svg("svg", {width: W, height: H, class: "heat", id: opts.id || null});
  if (labels) {
    keys.forEach((k, j) => add(root, svg("text", {class: "klabel", "data-k": j,
      transform: `translate(${left + cell * j + cell / 2 + 4},${top - 4}) rotate(-60)`}, show(k))));
    queries.forEach((q, i) => add(root, svg("text", {class: "qlabel", "data-q": i,
      x: left - 4, y: top + cell * i + cell / 2 + 4}, show(q))));
  }
  P.forEach((row, i) => row.forEach((p, j) => {
    const rect = svg("rect", {class: "cell", x: left + cell * j, y: top + cell * i, width: cell,
      height: cell, fill: colour(p), "data-q": i, "data-k": j, "data-p": String(p)});
    add(root, rect);
    if (labels && cell >= 26) {
      add(root, svg("text", {class: "val" + (p > 0.55 ? " dark" : ""), x: left + cell * j + cell / 2,
        y: top + cell * i + cell / 2 + 4}, p >= 0.995 ? "1" : fmt(p, 2).slice(1)));
    }
  }));
  if (opts.hover !== null && opts.hover !== undefined && opts.hover < queries.length) {
    add(root, svg("rect", {class: "rowmark", x: left, y: top + cell * opts.hover,
      width: cell * keys.length, height: cell}));
  }
  if (opts.onhover) {
    root.addEventListener("mouseover", (e) => {
      const q = e.target.dataset ? e.target.dataset.q : undefined;
      if (q !== undefined) opts.onhover(Number(q));
    });
  }
  return root;
}

async function viewAttention(root) {
  const data = await call("attention", {text: state.text});
  const ops = data.ops;
  let op = ops.find((o) => o.name === state.op) || ops[0];
  state.op = op.name;
  const H = op.P.length;
  if (!(state.head >= 0 && state.head < H)) state.head = 0;
  const [cmpName, cmpHead] = (state.cmp || "").split(":");
  const cmp = ops.find((o) => o.name === cmpName);
  const cmpH = Number(cmpHead);
  const hasCmp = cmp && cmpH >= 0 && cmpH < cmp.P.length &&
    !(cmp.name === op.name && cmpH === state.head);
  if (!hasCmp) state.cmp = null;

  // every layer and head at a glance: click to select, shift-click (or the compare mode) to compare
  const grid = el("table", {class: "thumbs", id: "thumbs"},
    el("tr", {}, el("th", {}, "op"), [...Array(H).keys()].map((h) => el("th", {}, `head ${h}`))),
    ops.map((o) => el("tr", {}, el("th", {class: "opname"}, o.name, el("br"),
      el("small", {}, KIND_NAMES[o.kind])),
    o.P.map((P, h) => {
      const selected = o.name === op.name && h === state.head;
      const compared = hasCmp && o.name === cmp.name && h === cmpH;
      return el("td", {class: (selected ? "sel" : "") + (compared ? " cmp" : ""),
        title: `${o.name} head ${h}: click to show, shift-click to compare`,
        onclick: (e) => {
          if (e.shiftKey) state.cmp = `${o.name}:${h}`;
          else { state.op = o.name; state.head = h; }
          render();
        }}, heatmap(P, o.queries, o.keys, {cell: Math.max(3, Math.floor(60 / Math.max(o.keys.length, o.queries.length))), labels: false}));
    }))));

  const hover = Number.isInteger(state.hover) && state.hover < op.queries.length ? state.hover : null;
  const looks = el("div", {class: "looks", id: "looks"});
  function showLooks(q) {
    state.hover = q;
    writeUrl();
    for (const map of document.querySelectorAll(".main-maps .heat .rowmark")) map.remove();
    const row = op.P[state.head][q];
    looks.replaceChildren(el("span", {class: "looks-head"}, `${show(op.queries[q])} (query ${q}) looks at:`),
      ...op.keys.map((k, j) => {
        const chip = el("span", {class: "chip", title: fmt(row[j], 4)}, show(k), el("small", {}, fmt(row[j], 2)));
        chip.style.background = colour(row[j]);
        if (row[j] > 0.55) chip.classList.add("dark");
        return chip;
      }));
  }
  const main = heatmap(op.P[state.head], op.queries, op.keys,
    {hover, id: "main-map", onhover: (q) => showLooks(q)});
  const maps = el("div", {class: "main-maps"}, el("figure", {},
    el("figcaption", {}, `${op.name} · head ${state.head} · ${KIND_NAMES[op.kind]}`), main));
  if (hasCmp) {
    const group = data.compare.find((g) => g.kind === op.kind && g.kind === cmp.kind);
    let distance = null;
    if (group) {
      const a = group.heads.findIndex((x) => x.op === op.name && x.head === state.head);
      const b = group.heads.findIndex((x) => x.op === cmp.name && x.head === cmpH);
      distance = group.distance[a][b];
    }
    maps.append(el("figure", {}, el("figcaption", {}, `${cmp.name} · head ${cmpH}`,
      el("button", {class: "small", onclick: () => { state.cmp = null; render(); }}, "×")),
    heatmap(cmp.P[cmpH], cmp.queries, cmp.keys, {hover, id: "cmp-map", onhover: (q) => showLooks(q)})),
    el("p", {class: "distance", id: "distance"}, distance === null
      ? "different kinds of attention: no distance"
      : `mean total-variation distance between the two heads' rows: ${fmt(distance)} (0 = the same, 1 = no key in common)`));
  }
  add(root, 
    data.translation !== null && data.translation !== undefined
      ? el("p", {class: "translation"}, "decoder input: <bos> + the greedy translation ", el("b", {}, data.translation)) : null,
    el("div", {class: "att"}, el("div", {}, el("h3", {}, "every layer and head"), grid,
      note("click: show it large; shift-click: compare with the one shown")),
    el("div", {}, maps, looks,
      note("Row t: the weights query token t gives each key; each row sums to 1. Hover a row (or a token on the left) to read it." +
        (data.translation !== null && data.translation !== undefined && op.name.startsWith("decoder")
          ? " The decoder's rows are the tokens fed to it: the row of a token is the step that chooses the token after it." : "")))),
    distances(data, op));
  if (hover !== null) showLooks(hover);
}

function distances(data, op) {
  // the heads of one kind of attention, compared two by two (server: views.head_distances)
  const group = data.compare.find((g) => g.kind === op.kind);
  if (!group || group.heads.length < 2) return null;
  const n = group.heads.length;
  const cell = Math.max(10, Math.min(26, Math.floor(300 / n)));
  const name = (x) => `${x.op.replace("_attn", "").replace("self", "s").replace("cross", "x")}:${x.head}`;
  const left = 8 + 7 * Math.max(...group.heads.map((x) => name(x).length));
  const plot = svg("svg", {width: left + cell * n, height: 20 + cell * n, class: "heat dist"});
  group.heads.forEach((x, i) => {
    plot.append(svg("text", {class: "qlabel", x: left - 4, y: 20 + cell * i + cell / 2 + 4}, name(x)));
    group.heads.forEach((y, j) => {
      const d = group.distance[i][j];
      plot.append(svg("rect", {class: "cell", x: left + cell * j, y: 20 + cell * i, width: cell,
        height: cell, fill: colour(1 - d), "data-d": String(d),
        onclick: () => { state.op = x.op; state.head = x.head; state.cmp = `${y.op}:${y.head}`; render(); }},
      svg("title", {}, `${x.op} head ${x.head} vs ${y.op} head ${y.head}: ${fmt(d)}`)));
    });
  });
  return el("div", {class: "dists"}, el("h3", {}, `how alike are the ${KIND_NAMES[op.kind]} heads?`),
    plot, note("Mean total-variation distance between the rows of two heads, for this text (bright: alike). Click a square to compare the pair."));
}

// ------------------------------------------------------------------- next token
async function viewNext(root) {
  const m = currentModel();
  const params = () => ({text: state.text, temperature: state.temperature, top_k: state.top_k,
    top_p: state.top_p});
  const data = await call("next", params());
  const controls = el("div", {class: "controls", id: "sampler"},
    slider("temperature", 0.05, 3, 0.05, state.temperature),
    el("label", {}, "top-k ", el("input", {type: "number", min: 0, max: m.vocab_size, step: 1,
      value: state.top_k, id: "top_k", onchange: (e) => {
        state.top_k = Math.max(0, Math.min(m.vocab_size, Math.round(Number(e.target.value) || 0)));
        render();
      }}), el("small", {}, " (0 = all)")),
    slider("top_p", 0.05, 1, 0.05, state.top_p));
  const append = (text) => {
    state.text = text;
    $("text").value = text;
    render();
  };
  const buttons = el("div", {class: "controls"},
    el("button", {id: "append-greedy", disabled: data.greedy.end,
      onclick: () => append(data.greedy.append)}, `append the greedy token ${show(data.greedy.piece)}`),
    el("button", {id: "sample", onclick: async () => {
      try {
        const drawn = await call("next", {...params(), seed: state.seed});
        state.seed += 1;
        if (drawn.sampled.end) { showError(new ApiError("the sampler drew <eos>: the text ends here")); return; }
        append(drawn.sampled.append);
      } catch (err) { showError(err); }
    }}, `sample one (seed ${state.seed})`));
  const maxP = Math.max(...data.candidates.map((c) => Math.max(c.p_model, c.p_sample)));
  const rows = data.candidates.map((c, i) => {
    const tr = el("tr", {class: "cand" + (c.p_sample === 0 ? " filtered" : "") + (c.end ? " end" : ""),
      "data-id": c.id, title: c.end ? "end of text" : "click to append"},
    el("td", {class: "rank"}, i + 1),
    el("td", {class: "tok"}, show(c.piece), c.id === data.greedy.id ? el("span", {class: "star", title: "greedy"}, " ★") : null),
    el("td", {class: "num"}, fmt(c.p_model)),
    el("td", {}, el("div", {class: "bar model", "data-w": c.p_model / maxP})),
    el("td", {class: "num"}, c.p_sample === 0 ? "filtered" : fmt(c.p_sample)),
    el("td", {}, el("div", {class: "bar sampler", "data-w": c.p_sample / maxP})));
    if (!c.end) tr.addEventListener("click", () => append(c.append));
    return tr;
  });
  const table = el("table", {class: "next", id: "candidates"}, el("tr", {}, el("th", {}, "#"),
    el("th", {}, "token"), el("th", {colspan: 2}, "model p (T = 1)"),
    el("th", {colspan: 2}, "sampler p (T, top-k, top-p)")), rows);
  for (const bar of table.querySelectorAll(".bar")) bar.style.width = `${Number(bar.dataset.w) * 160}px`;
  add(root, 
    el("h2", {}, "the next token after ", el("span", {class: "prompt"}, data.prompt.map((p) =>
      el("span", {class: "piece small"}, show(p))))),
    data.cut ? el("p", {class: "warn"}, `the first ${data.cut} tokens are cut off: the model reads ${m.max_len - 2} at most before it continues`) : null,
    controls, buttons, table,
    note(`The sampler keeps ${data.kept} of ${data.vocab_size} tokens. Entropy of the model's distribution: ${fmt(data.entropy_model)} nats. ` +
      "Click a token to append it; ★ is the greedy choice (npformer generate with temperature 0)."));
}

function slider(name, min, max, step, value) {
  const out = el("output", {}, fmt(value, 2));
  const input = el("input", {type: "range", min, max, step, value, id: name});
  input.addEventListener("input", () => { out.textContent = fmt(input.value, 2); });
  input.addEventListener("change", () => {
    state[name] = Number(input.value);
    render();
  });
  return el("label", {}, `${name.replace("_", "-")} `, input, " ", out);
}

// ------------------------------------------------------------------ translation
async function viewTranslate(root) {
  const body = {text: state.text, method: state.method === "beam" ? "beam" : "greedy"};
  if (body.method === "beam") body.beam_size = Math.max(1, Math.min(info.limits.beam, state.beam));
  const data = await call("translate", body);
  const T = data.steps.length;
  const t = Math.max(0, Math.min(T - 1, state.step));
  state.step = t;
  const controls = el("div", {class: "controls"},
    ["greedy", "beam"].map((m) => el("label", {}, el("input", {type: "radio", name: "method", value: m,
      checked: body.method === m, onchange: () => { state.method = m; state.step = 0; render(); }}), m)),
    el("label", {}, " beam size ", el("input", {type: "number", min: 1, max: info.limits.beam, value: state.beam,
      disabled: body.method !== "beam", onchange: (e) => { state.beam = Number(e.target.value); render(); }})),
    el("span", {class: "stepper"},
      el("button", {id: "prev", disabled: t === 0, onclick: () => { state.step = t - 1; render(); }}, "◀"),
      el("input", {type: "range", min: 0, max: T - 1, value: t, id: "step",
        onchange: (e) => { state.step = Number(e.target.value); render(); }}),
      el("button", {id: "next-step", disabled: t === T - 1, onclick: () => { state.step = t + 1; render(); }}, "▶"),
      ` step ${t + 1} of ${T}`));
  const output = el("div", {class: "words out", id: "output"}, el("span", {class: "piece special"}, el("span", {class: "ptext"}, "<bos>")),
    data.steps.map((s, i) => el("span", {class: "piece" + (i === t ? " now" : i > t ? " later" : ""),
      onclick: () => { state.step = i; render(); }}, el("span", {class: "ptext"}, show(s.token.piece)),
    el("span", {class: "pid"}, fmt(s.token.p, 2)))));
  const step = data.steps[t];
  const alts = el("table", {class: "next", id: "alternatives"}, step.alternatives.map((a) => {
    const bar = el("div", {class: "bar model"});
    bar.style.width = `${a.p * 160}px`;
    return el("tr", {class: a.id === step.token.id ? "chosen" : ""}, el("td", {class: "tok"}, show(a.piece)),
      el("td", {class: "num"}, fmt(a.p)), el("td", {}, bar));
  }));
  const cross = el("div", {class: "cross", id: "cross"}, step.cross.map((heads, layer) => {
    const mean = heads[0].map((_, j) => heads.reduce((s, row) => s + row[j], 0) / heads.length);
    return el("figure", {}, el("figcaption", {}, `decoder.${layer}.cross_attn at step ${t + 1}: heads 0-${heads.length - 1}, then their mean`),
      heatmap([...heads, mean], [...heads.map((_, h) => `head ${h}`), "mean"], data.source, {cell: 30}));
  }));
  const last = data.steps.map((s) => {
    const heads = s.cross[s.cross.length - 1];
    return heads[0].map((_, j) => heads.reduce((acc, row) => acc + row[j], 0) / heads.length);
  });
  add(root, 
    el("h2", {}, `${data.method === "beam" ? `beam search (${body.beam_size} beams)` : "greedy"}: `, el("b", {id: "translation"}, data.translation)),
    controls, el("h3", {}, "output, step by step (the number: the probability of the token chosen)"), output,
    el("div", {class: "steprow"},
      el("div", {}, el("h3", {}, `step ${t + 1}: the model's top ${step.alternatives.length} for token ${t + 1}`), alts,
        step.rank > 1 ? el("p", {class: "warn"}, `the ${data.method} search kept its ${ordinal(step.rank)} choice here`) : null),
      el("div", {}, el("h3", {}, "where this step looked in the source (cross-attention)"), cross)),
    el("div", {}, el("h3", {}, "the whole alignment: every step (rows) over the source, last layer, mean of the heads"),
      heatmap(last, data.steps.map((s, i) => `${i + 1}: ${show(s.token.piece)}`),
        data.source, {hover: t, id: "alignment", cell: 24})),
    note("Each row is one step, labelled by the token it chose: where the decoder looked in the source when it chose it (the last step chooses <eos>)."));
}

function ordinal(n) {
  return n === 2 ? "2nd" : n === 3 ? "3rd" : `${n}th`;
}

// --------------------------------------------------------------- classification
async function viewClassify(root) {
  const data = await call("classify", {text: state.text});
  const bars = el("table", {class: "next", id: "labels"}, data.labels.map((label, i) => {
    const bar = el("div", {class: "bar sampler"});
    bar.style.width = `${data.probs[i] * 240}px`;
    return el("tr", {class: label === data.best ? "chosen" : ""}, el("td", {class: "tok"}, label),
      el("td", {class: "num"}, fmt(data.probs[i])), el("td", {}, bar));
  }));
  const heads = data.looked_at.map((_, h) => `head ${h}`);
  add(root, el("h2", {}, "label: ", el("b", {id: "best"}, data.best)), bars,
    data.cut ? el("p", {class: "warn"}, `${data.cut} tokens were cut off (max_len)`) : null,
    el("h3", {}, `which positions the pooled vector is made of (pooling: ${data.pooling})`),
    heatmap([data.pool], ["pool weight"], data.tokens, {cell: 34, id: "pool"}),
    el("h3", {}, `where those positions looked in the last layer (${data.layer})`),
    heatmap(data.looked_at, heads, data.tokens, {cell: 34, id: "looked"}),
    note("The head reads one vector: the weighted sum of the last block's outputs with the pool weights above. " +
      "The rows below are the last layer's attention of those positions: a hint at where the information came from, not a full attribution (earlier layers mix the tokens too)."));
}

// ------------------------------------------------------------------ training run
async function viewRun(root) {
  const index = Math.max(0, Math.min(info.runs.length - 1, state.run));
  state.run = index;
  if (!runData || runData.index !== index) runData = {index, offset: 0, file_id: null, records: []};
  await pollRun();
  const runs = info.runs.length > 1 ? el("div", {class: "controls"}, "run: ", el("select", {
    onchange: (e) => { state.run = Number(e.target.value); render(); }},
  info.runs.map((r, i) => el("option", {value: i, selected: i === index}, r)))) : null;
  const charts = el("div", {id: "charts"});
  const table = el("div", {id: "checkpoints"});
  add(root, el("h2", {}, `training run ${info.runs[index]}`), runs, charts, table);
  drawRun(charts, table);
  const mine = generation;
  const tick = async () => {
    if (mine !== generation) return;
    try {
      await pollRun();
      drawRun(charts, table);
    } catch (err) {
      if (err.name !== "AbortError") console.error(err);
    }
    if (mine === generation) pollTimer = setTimeout(tick, 2000);
  };
  pollTimer = setTimeout(tick, 2000);
}

async function pollRun() {
  const q = new URLSearchParams({run: runData.index, offset: runData.offset});
  if (runData.file_id) q.set("file_id", runData.file_id);
  const data = await api(`/api/run?${q}`);
  if (data.reset) runData.records = [];
  runData.records.push(...data.records);
  runData.offset = data.offset;
  runData.file_id = data.file_id;
  runData.exists = data.exists;
  runData.checkpoints = data.checkpoints;
}

function drawRun(charts, table) {
  const recs = runData.records;
  if (!runData.exists) {
    charts.replaceChildren(note("waiting for log.jsonl (the run has not started yet)"));
  } else {
    const train = recs.filter((r) => r.type === "train");
    const valid = recs.filter((r) => r.type === "valid");
    const series = [
      {name: "training loss", points: train.map((r) => [r.step, r.window_loss]), cls: "s1"},
      {name: "validation loss", points: valid.map((r) => [r.step, r.valid_loss]), cls: "s2", dots: true}];
    const metrics = [...new Set(valid.flatMap((r) => Object.keys(r)))]
      .filter((k) => !["type", "step", "valid_loss"].includes(k) && valid.some((r) => typeof r[k] === "number"));
    const last = recs.length ? recs[recs.length - 1].step : 0;
    charts.replaceChildren(
      el("p", {class: "note", id: "run-status"}, `${train.length} training records, ${valid.length} validations, last step ${last}; updates every 2 s. ` +
        "The training loss is the mean over the batches since the previous record, with the run's label smoothing (so it sits above the validation loss, which has none)."),
      el("div", {class: "charts"}, lineChart("loss (nats / token)", series, 460, 260),
        metrics.map((k) => lineChart(k, [{name: k, points: valid.map((r) => [r.step, r[k]]), cls: "s3", dots: true}], 300, 200)),
        lineChart("learning rate", [{name: "lr", points: train.map((r) => [r.step, r.lr]), cls: "s4"}], 300, 200)));
  }
  const rows = (runData.checkpoints || []).map((c) => el("tr", {},
    el("td", {}, c.name), el("td", {class: "num"}, c.step ?? ""),
    el("td", {}, c.error ? c.error : c.valid ? Object.entries(c.valid).filter(([k]) => !["type", "step"].includes(k))
      .map(([k, v]) => `${k} ${typeof v === "number" ? Number(v).toPrecision(4) : v}`).join(", ") : ""),
    el("td", {class: "num"}, `${(c.bytes / 1024).toFixed(0)} KiB`),
    el("td", {}, new Date(c.modified * 1000).toLocaleTimeString()),
    el("td", {}, c.error ? "" : el("button", {class: "small", onclick: () => openCheckpoint(c.name).catch(showError)}, "open"))));
  table.replaceChildren(el("h3", {}, "checkpoints"), rows.length ? el("table", {class: "ckpts"},
    el("tr", {}, ["file", "step", "its last validation", "size", "saved", ""].map((h) => el("th", {}, h))), rows)
    : note("no checkpoint yet (the first is saved at the first validation)"));
}

async function openCheckpoint(name) {
  const opened = await api("/api/open", {run: runData.index, name});
  info = await api("/api/models");
  fillModels();
  state.view = "attention";
  switchModel(opened.model);
  $("model").value = opened.model;
}

function lineChart(title, series, W, H) {
  const pad = {l: 52, r: 10, t: 22, b: 28};
  const all = series.flatMap((s) => s.points).filter(([, y]) => typeof y === "number");
  const plot = svg("svg", {width: W, height: H, class: "chart"});
  plot.append(svg("text", {x: pad.l, y: 14, class: "title"}, title));
  if (!all.length) return plot;
  const xmax = Math.max(extent(all.map((p) => p[0]))[1], 1);
  let [ymin, ymax] = extent(all.map((p) => p[1]));
  if (ymin === ymax) { ymin -= 0.5; ymax += 0.5; }
  const sx = (x) => pad.l + x / xmax * (W - pad.l - pad.r);
  const sy = (y) => H - pad.b - (y - ymin) / (ymax - ymin) * (H - pad.t - pad.b);
  for (const f of [0, 0.5, 1]) {
    const y = ymin + f * (ymax - ymin);
    plot.append(svg("line", {class: "grid", x1: pad.l, x2: W - pad.r, y1: sy(y), y2: sy(y)}),
      svg("text", {class: "tick", x: pad.l - 4, y: sy(y) + 4}, Number(y.toPrecision(3))));
  }
  plot.append(svg("text", {class: "tick", x: W - pad.r, y: H - 8}, `step ${xmax}`));
  series.forEach((s, i) => {
    const pts = s.points.filter(([, y]) => typeof y === "number");
    plot.append(svg("polyline", {class: `line ${s.cls}`, points: pts.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ")}));
    if (s.dots) pts.forEach(([x, y]) => plot.append(svg("circle", {class: `dot ${s.cls}`, cx: sx(x), cy: sy(y), r: 3})));
    if (series.length > 1) plot.append(svg("text", {class: `legend ${s.cls}`, x: W - pad.r, y: 14 + 14 * i}, s.name));
  });
  return plot;
}

// ------------------------------------------------------------------------ errors
function showError(err) {
  if (err.name === "AbortError") return; // a newer redraw cancelled this request
  $("error").hidden = false;
  $("error").textContent = err.message;
}

start().catch((err) => {
  showError(err);
  document.body.dataset.ready = "error";
});
