// Parley's browser client: wires the socket, the microphone, playback and the page together.
// Everything the server sends is untrusted text: it is shown with textContent only (see dom.js).

import { MicCapture, MIC_RATE, micErrorMessage, Player } from "./audio.js";
import { el, safeHttpUrl } from "./dom.js";
import { MemoryPanel } from "./memory.js";
import { Connection } from "./protocol.js";

const $ = (id) => document.getElementById(id);
const USER_KEY = "parley.userId";
const USER_RE = /^[A-Za-z0-9_.@-]{1,64}$/;
// Latency stages of response.done.metrics, in pipeline order; e2e is the sum the user feels.
const STAGES = [
  ["vad_end", "end of turn"],
  ["asr", "recognition"],
  ["memory", "memory"],
  ["route", "routing"],
  ["retrieval", "retrieval"],
  ["llm_ttft", "LLM 1st token"],
  ["tts_first_audio", "TTS 1st audio"],
  ["e2e", "end to end"],
];
const THINKING_TIMEOUT_MS = 10000; // after vad.end, noise may yield no turn at all: stop "thinking" then

const token = new URLSearchParams(location.search).get("token");

function initialUserId() {
  const saved = localStorage.getItem(USER_KEY);
  if (saved && USER_RE.test(saved)) return saved;
  const fresh = `guest-${Math.random().toString(36).slice(2, 8)}`;
  localStorage.setItem(USER_KEY, fresh);
  return fresh;
}

const player = new Player({ jitterMs: 100, onChange: () => refreshIndicator() });
const mic = new MicCapture((frame) => {
  if (conn.sendAudio(frame)) state.micFramesSent += 1;
});

// Live state, also exposed for tests and for poking at from the console.
const state = {
  userId: initialUserId(),
  connected: false,
  sessionId: null,
  outputSampleRate: null,
  connection: "connecting",
  indicator: "offline",
  userSpeaking: false,
  awaitingReply: false,
  currentTurn: null,
  lastRoute: null,
  turns: [], // {turnId, transcript, route, reason, sources, text, audioFrames, done, interrupted, metrics}
  errors: [], // {code, message}
  micFramesSent: 0,
  micError: null,
  memoryCount: null,
  get micOn() {
    return mic.active;
  },
  get audioFramesReceived() {
    return player.stats.framesReceived;
  },
  get audioFramesPlayed() {
    return player.stats.framesPlayed;
  },
  get samplesScheduled() {
    return player.stats.samplesScheduled;
  },
  get samplesPlayed() {
    return player.stats.samplesPlayed;
  },
  get playing() {
    return player.playing;
  },
};
window.parley = state;

// --- banner: one message at a time, the newest wins ---------------------------------

let bannerKind = null;
let bannerAction = null;

function showBanner(kind, text, action = null) {
  bannerKind = kind;
  bannerAction = action;
  $("banner").dataset.kind = kind;
  $("banner-text").textContent = text;
  $("banner-action").hidden = !action;
  if (action) $("banner-action").textContent = action.label;
  $("banner").hidden = false;
}

function hideBanner(kind) {
  if (kind && kind !== bannerKind) return; // someone else's message is showing
  bannerKind = null;
  $("banner").hidden = true;
}

$("banner-close").addEventListener("click", () => hideBanner());
$("banner-action").addEventListener("click", () => bannerAction && bannerAction.run());

// --- connection ---------------------------------------------------------------------

let countdown = null;

function setPill(kind, text) {
  state.connection = kind;
  $("connection").dataset.state = kind;
  $("connection").textContent = text;
}

function onStatus(status) {
  clearInterval(countdown);
  const wasConnected = state.connected;
  state.connected = status.state === "ready";
  if (status.state === "ready") {
    state.sessionId = status.sessionId;
    setPill("ready", "Connected");
    hideBanner("connection");
  } else if (status.state === "connecting") {
    setPill("connecting", "Connecting…");
  } else if (status.state === "retrying") {
    // Show the back-off so the user knows it is being handled and when the next try is.
    const due = Date.now() + status.delayMs;
    const tick = () => {
      const secs = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      setPill("retrying", `Reconnecting in ${secs} s`);
      showBanner("connection", `Lost the connection to the server. Reconnecting in ${secs} s (attempt ${status.attempt})…`,
        { label: "Retry now", run: () => conn.retryNow() });
    };
    tick();
    countdown = setInterval(tick, 1000);
  } else if (status.state === "failed") {
    setPill("failed", "Refused");
    const why = status.code === 4401
      ? "This server needs an access token. Open the page as …/?token=YOUR_TOKEN."
      : `The server refused the session (${status.reason}). Check the user id.`;
    showBanner("connection", why, { label: "Try again", run: () => conn.retryNow() });
  } else {
    setPill("closed", "Disconnected");
  }
  if (wasConnected && !state.connected) {
    // The server drops the reply with the session; do not keep playing or "thinking".
    player.stop();
    state.userSpeaking = false;
    state.awaitingReply = false;
  }
  refreshIndicator();
  refreshStop();
}

const conn = new Connection({
  startMessage: () => {
    const start = { type: "session.start", user_id: state.userId, sample_rate: MIC_RATE, audio_output: true };
    if (token) start.token = token;
    return start;
  },
  onEvent,
  onAudio: (buf) => {
    player.push(buf);
    const t = state.currentTurn && findTurn(state.currentTurn);
    if (t) t.audioFrames += 1;
    if (player.blocked) {
      showBanner("sound", "The browser blocked sound until you interact with the page.", {
        label: "Enable sound",
        run: () => {
          player.unlock();
          hideBanner("sound");
        },
      });
    }
  },
  onStatus,
});

// --- turns --------------------------------------------------------------------------

const views = new Map(); // turnId -> elements of its card

function findTurn(turnId) {
  return state.turns.find((t) => t.turnId === turnId);
}

/** The turn's record and card, created on first mention (events may arrive in any order). */
function turnFor(turnId) {
  let turn = findTurn(turnId);
  if (turn) return [turn, views.get(turnId)];
  turn = { turnId, transcript: "", route: null, reason: "", sources: [], text: "", audioFrames: 0,
           done: false, interrupted: false, metrics: null };
  state.turns.push(turn);
  const v = {
    transcript: el("p", { class: "bubble user-text" }),
    route: el("div", { class: "route", hidden: true }),
    reply: el("p", { class: "bubble reply-text" }),
    sources: el("ul", { class: "sources", hidden: true }),
    metrics: el("details", { class: "metrics", hidden: true }),
    suggestions: el("div", { class: "suggestions", hidden: true }),
  };
  v.card = el("li", { class: "turn pending", "data-turn-id": turnId },
    el("div", { class: "row user" }, v.transcript),
    el("div", { class: "row assistant" }, v.route, v.reply, v.sources, v.suggestions, v.metrics));
  views.set(turnId, v);
  $("empty").hidden = true;
  const list = $("turns");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  list.append(v.card);
  if (atBottom) v.card.scrollIntoView({ block: "end" });
  return [turn, v];
}

function keepScrolled(v) {
  const list = $("turns");
  if (list.lastElementChild === v.card && list.scrollHeight - list.scrollTop - list.clientHeight < 160) {
    list.scrollTop = list.scrollHeight;
  }
}

function renderRoute(v, route, reason) {
  const kind = ["direct", "web_search", "memory_recall"].includes(route) ? route : "tool";
  const label = { direct: "direct answer", web_search: "web search", memory_recall: "memory recall" }[route] || `tool: ${route}`;
  v.route.replaceChildren(
    el("span", { class: `badge route-${kind}` }, label),
    reason ? el("span", { class: "reason" }, reason) : null,
  );
  v.route.hidden = false;
}

function renderSources(v, items) {
  v.sources.replaceChildren(...items.map((item, i) => {
    const title = (item && (item.title || item.url)) || `Source ${i + 1}`;
    const href = safeHttpUrl(item && item.url);
    // Only http(s) links are clickable; anything else (javascript:, data:) is shown as text.
    const link = href
      ? el("a", { href, target: "_blank", rel: "noopener noreferrer nofollow" }, title)
      : el("span", { class: "source-title" }, title);
    return el("li", {}, link, item && item.snippet ? el("span", { class: "snippet" }, item.snippet) : null);
  }));
  v.sources.hidden = items.length === 0;
}

function renderMetrics(v, metrics) {
  const stages = STAGES.filter(([key]) => Number.isFinite(metrics[key]));
  if (!stages.length) return;
  const longest = Math.max(...stages.map(([key]) => metrics[key]), 1);
  const total = Number.isFinite(metrics.e2e) ? ` · ${Math.round(metrics.e2e)} ms end to end` : "";
  v.metrics.replaceChildren(
    el("summary", {}, `Latency${total}`),
    el("div", { class: "metric-grid" }, ...stages.map(([key, label]) => {
      const fill = el("span", { class: "fill" });
      fill.style.width = `${Math.max(1, (metrics[key] / longest) * 100).toFixed(1)}%`;
      return el("div", { class: `metric metric-${key}`, "data-stage": key },
        el("span", { class: "metric-name" }, label),
        el("span", { class: "bar" }, fill),
        el("span", { class: "metric-value" }, `${Math.round(metrics[key])} ms`));
    })),
  );
  // Only the newest turn shows its breakdown open; older ones fold to one line.
  for (const other of document.querySelectorAll("details.metrics[open]")) other.open = false;
  v.metrics.open = true;
  v.metrics.hidden = false;
}

function renderSuggestions(v, items) {
  const texts = (Array.isArray(items) ? items : []).filter((s) => typeof s === "string" && s.trim()).slice(0, 4);
  v.suggestions.replaceChildren(...texts.map((s) => {
    const chip = el("button", { type: "button", class: "chip" }, s);
    chip.addEventListener("click", () => sendText(s));
    return chip;
  }));
  v.suggestions.hidden = texts.length === 0;
}

// --- server events ------------------------------------------------------------------

let thinkingTimer = null;

function onEvent(ev) {
  const id = ev.turn_id;
  switch (ev.type) {
    case "session.ready":
      state.outputSampleRate = ev.output_sample_rate;
      memory.refresh();
      break;
    case "vad.start":
      state.userSpeaking = true;
      // Barge-in: the user talks over the reply, so silence it now (the server cancels it too).
      if (player.playing) player.stop();
      break;
    case "vad.end":
      state.userSpeaking = false;
      state.awaitingReply = true;
      clearTimeout(thinkingTimer);
      thinkingTimer = setTimeout(() => {
        if (!state.currentTurn) state.awaitingReply = false;
        refreshIndicator();
        refreshStop();
      }, THINKING_TIMEOUT_MS);
      break;
    case "transcript.partial":
      $("partial").textContent = ev.text || "";
      $("partial").hidden = !ev.text;
      break;
    case "transcript.final": {
      const [turn, v] = turnFor(id);
      turn.transcript = ev.text || "";
      v.transcript.textContent = turn.transcript;
      $("partial").hidden = true;
      state.currentTurn = id;
      state.awaitingReply = true;
      break;
    }
    case "route": {
      const [turn, v] = turnFor(id);
      turn.route = ev.route;
      turn.reason = ev.reason || "";
      state.lastRoute = { route: ev.route, reason: turn.reason, turnId: id };
      renderRoute(v, ev.route, turn.reason);
      break;
    }
    case "sources": {
      const [turn, v] = turnFor(id);
      turn.sources = Array.isArray(ev.items) ? ev.items : [];
      renderSources(v, turn.sources);
      break;
    }
    case "response.text.delta": {
      const [turn, v] = turnFor(id);
      turn.text += ev.delta || "";
      v.reply.append(ev.delta || ""); // a text node per token: cheap, and never parsed as HTML
      keepScrolled(v);
      break;
    }
    case "response.audio.start":
      state.currentTurn = id;
      player.begin(ev.sample_rate || state.outputSampleRate || 22050);
      break;
    case "response.audio.end":
      player.end();
      break;
    case "response.done": {
      const [turn, v] = turnFor(id);
      turn.done = true;
      turn.interrupted = Boolean(ev.interrupted);
      turn.metrics = ev.metrics || {};
      if (turn.interrupted) {
        player.stop();
        v.card.classList.add("interrupted");
        v.reply.append(el("span", { class: "tag" }, "interrupted"));
      }
      if (!turn.text && ev.text) v.reply.textContent = turn.text = ev.text;
      v.card.classList.remove("pending");
      renderMetrics(v, turn.metrics);
      if (state.currentTurn === id) state.currentTurn = null;
      state.awaitingReply = false;
      keepScrolled(v);
      // The agent may have stored something from this turn; give its writer a moment.
      setTimeout(() => memory.refresh(), 1500);
      break;
    }
    case "suggestions":
      renderSuggestions(turnFor(id)[1], ev.items);
      break;
    case "error":
      state.errors.push({ code: ev.code, message: ev.message });
      showBanner("error", `Server error (${ev.code}): ${ev.message}`);
      if (["llm_failed", "empty_input", "input_too_long"].includes(ev.code)) state.awaitingReply = false;
      break;
    default:
      break; // newer servers may send events this page does not know yet
  }
  refreshIndicator();
  refreshStop();
}

// --- indicator and buttons ------------------------------------------------------------

function refreshIndicator() {
  let kind = "idle";
  let text = "Ready — type or start the microphone";
  if (!state.connected) [kind, text] = ["offline", "Offline"];
  else if (state.userSpeaking) [kind, text] = ["hearing", "Hearing you…"];
  else if (player.playing) [kind, text] = ["speaking", "Speaking…"];
  else if (state.awaitingReply) [kind, text] = ["thinking", "Thinking…"];
  else if (mic.active) [kind, text] = ["listening", "Listening"];
  state.indicator = kind;
  $("indicator").dataset.state = kind;
  $("indicator-text").textContent = text;
  refreshStop();
}

function refreshStop() {
  $("stop").disabled = !(player.playing || state.awaitingReply);
}

function stopReply() {
  conn.send({ type: "interrupt" });
  player.stop();
  refreshIndicator();
}

$("stop").addEventListener("click", stopReply);
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !$("stop").disabled) stopReply();
});

// The output AudioContext may only start after a gesture: unlock it on the first one.
for (const type of ["pointerdown", "keydown"]) {
  document.addEventListener(type, () => player.unlock(), { once: true, capture: true });
}

// --- microphone -----------------------------------------------------------------------

async function toggleMic() {
  const button = $("mic");
  if (mic.active) {
    mic.stop();
  } else {
    button.disabled = true;
    player.unlock();
    try {
      await mic.start();
      state.micError = null;
      hideBanner("mic");
    } catch (err) {
      state.micError = err.name || "Error";
      showBanner("mic", micErrorMessage(err));
    } finally {
      button.disabled = false;
    }
  }
  button.setAttribute("aria-pressed", String(mic.active));
  button.classList.toggle("on", mic.active);
  $("mic-label").textContent = mic.active ? "Stop microphone" : "Start microphone";
  refreshIndicator();
}

$("mic").addEventListener("click", toggleMic);

// --- typed input ----------------------------------------------------------------------

function sendText(text) {
  text = text.trim();
  if (!text) return false;
  player.unlock();
  if (!conn.send({ type: "text", text })) {
    showBanner("connection", "Not connected yet — your message was not sent. It will work once the connection is back.");
    return false;
  }
  player.stop(); // a new question replaces the reply being spoken (the server interrupts it too)
  state.awaitingReply = true;
  refreshIndicator();
  return true;
}

$("text-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (sendText($("text-input").value)) $("text-input").value = "";
});

// --- user id and memory ---------------------------------------------------------------

const memory = new MemoryPanel({
  list: $("memory-list"),
  status: $("memory-status"),
  userId: () => state.userId,
  token: () => token,
  onLoaded: (n) => (state.memoryCount = n),
});

$("user-id").value = state.userId;
$("user-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const next = $("user-id").value.trim();
  if (!USER_RE.test(next)) {
    showBanner("user", "A user id is 1 to 64 letters, digits or _ . @ -");
    return;
  }
  hideBanner("user");
  if (next === state.userId) return;
  state.userId = next;
  localStorage.setItem(USER_KEY, next);
  // Memory and conversation are per user: start a fresh session as the new user.
  $("turns").append(el("li", { class: "note" }, `Now talking as ${next}.`));
  $("memory-q").value = "";
  memory.query = "";
  conn.retryNow();
});

$("memory-search").addEventListener("submit", (e) => {
  e.preventDefault();
  memory.refresh($("memory-q").value);
});
$("memory-q").addEventListener("search", () => {
  if (!$("memory-q").value) memory.refresh(""); // the clear (×) button of a search field
});
// Reload what the search field says now (an emptied field means the full list again).
$("memory-refresh").addEventListener("click", () => memory.refresh($("memory-q").value));

window.addEventListener("pagehide", () => conn.close());
// Coming back through the back/forward cache revives a page whose socket pagehide closed.
window.addEventListener("pageshow", (e) => e.persisted && conn.retryNow());
conn.connect();
refreshIndicator();
