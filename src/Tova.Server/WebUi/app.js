// Tova's web page: conversations (kept in this browser's localStorage), streaming chat through
// POST /v1/chat/completions (stream: true, with the "kv_cache" extension per conversation), and the multi-state
// view polled from GET /v1/tova/state. Plain DOM, no dependencies.
"use strict";

const $ = id => document.getElementById(id);
const STORE = "tova.conversations";
const KEY_STORE = "tova.apiKey";

const ui = {
  model: $("model"), notice: $("notice"), messages: $("messages"), input: $("input"), send: $("send"), stop: $("stop"),
  composer: $("composer"), list: $("conversations"), add: $("new-conversation"), policy: $("policy"), budget: $("budget"),
  maxTokens: $("max-tokens"), temperature: $("temperature"), defaults: $("defaults"), apiKey: $("api-key"),
  gauge: $("gauge"), gaugeTitle: $("gauge-title"), held: $("held"), evicted: $("evicted"), position: $("position"),
  kvBytes: $("kv-bytes"), layers: $("layers"),
};

let server = null;        // the last /v1/tova/state answer
let conversations = load();
let current = conversations[0];
let controller = null;    // AbortController of the answer being streamed

function load() {
  try {
    const list = JSON.parse(localStorage.getItem(STORE) || "[]");
    if (Array.isArray(list) && list.length > 0) return list;
  } catch { /* a broken store starts afresh */ }
  return [fresh()];
}

function fresh() {
  return { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 6), title: "New conversation",
           messages: [], policy: "", budget: "", maxTokens: "", temperature: "" };
}

function save() {
  try { localStorage.setItem(STORE, JSON.stringify(conversations)); } catch { /* storage full or off: keep in memory */ }
}

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = ui.apiKey.value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function notify(text) {
  ui.notice.textContent = text || "";
  ui.notice.hidden = !text;
}

// ---- conversations ----

function renderList() {
  ui.list.replaceChildren(...conversations.map(c => {
    const li = document.createElement("li");
    li.textContent = c.title;
    li.dataset.id = c.id;
    if (c === current) li.className = "current";
    li.addEventListener("click", () => { if (!controller) select(c); });
    return li;
  }));
}

function select(c) {
  current = c;
  ui.policy.value = c.policy;
  ui.budget.value = c.budget;
  ui.maxTokens.value = c.maxTokens;
  ui.temperature.value = c.temperature;
  syncBudget();
  ui.messages.replaceChildren(...c.messages.map(m => bubble(m.role, m.content, m.meta)));
  renderList();
}

// A message: <div class="msg ROLE"><span class="text">…</span><span class="meta">…</span></div>
function bubble(role, text, meta) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const span = document.createElement("span");
  span.className = "text";
  span.textContent = text;
  div.append(span);
  if (meta) addMeta(div, meta);
  return div;
}

function addMeta(div, text) {
  const span = document.createElement("span");
  span.className = "meta";
  span.textContent = text;
  div.append(span);
}

function syncBudget() {
  const full = ui.policy.value === "full" || (ui.policy.value === "" && server && server.defaults.policy === "full");
  ui.budget.disabled = full;
}

for (const [el, field] of [[ui.policy, "policy"], [ui.budget, "budget"], [ui.maxTokens, "maxTokens"], [ui.temperature, "temperature"]]) {
  for (const type of ["input", "change"])
    el.addEventListener(type, () => { current[field] = el.value.trim(); syncBudget(); save(); });
}

ui.add.addEventListener("click", () => {
  if (controller) return;
  const c = fresh();
  // A new conversation starts with the cache options of the one on screen.
  Object.assign(c, { policy: current.policy, budget: current.budget, maxTokens: current.maxTokens, temperature: current.temperature });
  conversations.unshift(c);
  save();
  select(c);
  ui.input.focus();
});

// ---- chat ----

function requestBody(c) {
  const body = { model: server ? server.model : undefined, messages: c.messages.filter(m => !m.error).map(m => ({ role: m.role, content: m.content })),
                 stream: true, stream_options: { include_usage: true } };
  if (c.maxTokens !== "") body.max_tokens = Number(c.maxTokens);
  if (c.temperature !== "") body.temperature = Number(c.temperature);
  const kv = {};
  if (c.policy !== "") kv.policy = c.policy;
  const full = c.policy === "full" || (c.policy === "" && server && server.defaults.policy === "full");
  if (c.budget !== "" && !full) kv.budget = /^\d+$/.test(c.budget) ? Number(c.budget) : c.budget;
  if (Object.keys(kv).length > 0) body.kv_cache = kv;
  return body;
}

async function errorText(response) {
  try {
    const e = await response.json();
    if (e && e.error && e.error.message) return e.error.message + (e.error.param ? " (" + e.error.param + ")" : "");
  } catch { /* not JSON */ }
  return "HTTP " + response.status;
}

async function send(text) {
  const c = current;
  c.messages.push({ role: "user", content: text });
  if (c.title === "New conversation") c.title = text.slice(0, 40);
  ui.messages.append(bubble("user", text));
  const out = bubble("assistant streaming", "");
  const outText = out.querySelector(".text");
  out.dataset.chunks = "0";
  ui.messages.append(out);
  ui.messages.scrollTop = ui.messages.scrollHeight;
  renderList();
  save();

  controller = new AbortController();
  busy(true);
  const polling = pollWhile(controller.signal);
  let answer = "", chunks = 0, usage = null, failed = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(true), body: JSON.stringify(requestBody(c)), signal: controller.signal,
    });
    if (!response.ok) throw new Error(await errorText(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let pending = "", done = false;
    while (!done) {
      const { value, done: end } = await reader.read();
      if (end) break;
      pending += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = pending.indexOf("\n\n")) >= 0) {
        const event = pending.slice(0, cut);
        pending = pending.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") { done = true; break; }
          const json = JSON.parse(data);
          if (json.error) throw new Error(json.error.message);
          if (json.usage) usage = json.usage;
          const piece = json.choices && json.choices[0] && json.choices[0].delta ? json.choices[0].delta.content : null;
          if (piece) {
            answer += piece;
            chunks++;
            outText.textContent = answer;
            out.dataset.chunks = String(chunks);
            ui.messages.scrollTop = ui.messages.scrollHeight;
          }
        }
      }
    }
  } catch (e) {
    failed = e.name === "AbortError" ? "stopped" : e.message;
  } finally {
    controller.abort();
    controller = null;
    busy(false);
  }
  await polling;
  out.classList.remove("streaming");
  let meta = usage ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens} generated tokens` : "";
  if (failed === "stopped") meta = "stopped";
  else if (failed) {
    out.classList.add("error");
    meta = failed;
  }
  if (meta) addMeta(out, meta);
  out.dataset.done = "true";
  c.messages.push({ role: "assistant", content: answer, meta, error: !!failed && failed !== "stopped" && !answer });
  save();
  await refreshState();
}

function busy(on) {
  ui.send.disabled = on;
  ui.stop.disabled = !on;
  ui.add.disabled = on;
}

ui.composer.addEventListener("submit", e => {
  e.preventDefault();
  const text = ui.input.value.trim();
  if (!text || controller) return;
  ui.input.value = "";
  send(text);
});
ui.input.addEventListener("keydown", e => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); ui.composer.requestSubmit(); }
});
ui.stop.addEventListener("click", () => { if (controller) controller.abort(); });

// ---- the multi-state view ----

async function refreshState() {
  try {
    const response = await fetch("/v1/tova/state", { headers: headers(false), cache: "no-store" });
    if (response.status === 401) { notify("this server needs an API key (Connection, right)"); return; }
    if (!response.ok) { notify("state: " + await errorText(response)); return; }
    notify("");
    const first = server === null;
    server = await response.json();
    if (first) describeServer();
    const running = server.running;
    showSequence(running.length > 0 ? running[running.length - 1] : server.last, running.length, server.queued);
  } catch (e) {
    notify("cannot reach the server: " + e.message);
  }
}

function describeServer() {
  ui.model.textContent = `${server.model} · ${server.layers} layers × ${server.kv_heads} KV heads · context ${server.context_length}`;
  const chosen = current.policy;
  ui.policy.replaceChildren(new Option(`server default (${server.defaults.policy})`, ""), ...server.policies.map(p => new Option(p, p)));
  ui.policy.value = chosen;
  ui.defaults.textContent = `Server default: ${server.defaults.describe}; max tokens ${server.max_tokens}.`;
  if (!server.chat) notify("this model has no usable chat template: chat requests are refused");
  syncBudget();
}

async function pollWhile(signal) {
  while (!signal.aborted) {
    await refreshState();
    await new Promise(resolve => setTimeout(resolve, 200));
  }
}

function showSequence(s, running, queued) {
  const g = ui.gauge.dataset;
  if (!s) {
    ui.gaugeTitle.textContent = "no request yet";
    return;
  }
  g.id = String(s.id);
  g.held = String(s.states_held);
  g.evicted = String(s.states_evicted);
  g.phase = s.phase;
  g.policy = s.policy;
  const live = s.phase === "prefill" || s.phase === "decode";
  ui.gaugeTitle.textContent = `request ${s.id} · ${s.phase} · ${s.policy}${s.policy === "full" ? "" : " budget " + s.budget}` +
    (live ? ` · ${running} running, ${queued} queued` : " (last ended)");
  ui.held.textContent = s.states_held.toLocaleString("en");
  ui.evicted.textContent = s.states_evicted.toLocaleString("en");
  ui.position.textContent = `${s.position} (${s.prompt_tokens} prompt + ${s.completion_tokens} generated)`;
  ui.kvBytes.textContent = s.kv_bytes.toLocaleString("en");
  const rows = s.layers.map((layer, i) => {
    const row = document.createElement("div");
    row.className = "layer";
    row.dataset.held = String(layer.held);
    row.dataset.limit = String(layer.limit);
    row.dataset.evicted = String(layer.evicted);
    const name = document.createElement("span");
    name.textContent = "L" + i;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.title = `${layer.held} of ${layer.limit} states held, ${layer.evicted} evicted`;
    const fill = document.createElement("span");
    fill.style.width = (layer.limit > 0 ? Math.min(100, 100 * layer.held / layer.limit) : 0).toFixed(1) + "%";
    bar.append(fill);
    const held = document.createElement("span");
    held.className = "held";
    held.textContent = `${layer.held}/${layer.limit}`;
    const ev = document.createElement("span");
    ev.className = "ev";
    ev.textContent = "−" + layer.evicted;
    row.append(name, bar, held, ev);
    return row;
  });
  ui.layers.replaceChildren(...rows);
}

// ---- start ----

try { ui.apiKey.value = sessionStorage.getItem(KEY_STORE) || ""; } catch { /* storage off */ }
ui.apiKey.addEventListener("change", () => {
  try { sessionStorage.setItem(KEY_STORE, ui.apiKey.value.trim()); } catch { /* storage off */ }
  server = null;
  refreshState();
});
select(current);
refreshState();
