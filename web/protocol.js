// The /ws connection (docs/protocol.md): session.start, JSON events, binary audio,
// and reconnection with exponential back-off.

const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_BAD_START = 4400;
const MAX_BACKOFF_MS = 15000;

/** ws:// or wss:// to the page's own host: the server serves the page and the socket on one port. */
export function socketUrl(location = window.location) {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
}

export class Connection {
  /**
   * @param {object} opts
   * @param {() => object} opts.startMessage builds session.start (read at every (re)connect)
   * @param {(ev: object) => void} opts.onEvent each JSON event
   * @param {(buf: ArrayBuffer) => void} opts.onAudio each binary frame
   * @param {(status: object) => void} opts.onStatus {state, attempt, delayMs, reason}
   */
  constructor({ url = socketUrl(), startMessage, onEvent, onAudio, onStatus }) {
    Object.assign(this, { url, startMessage, onEvent, onAudio, onStatus });
    this.ws = null;
    this.ready = false;
    this.attempt = 0;
    this.timer = null;
    this.wanted = false; // false once close() was called: do not reconnect
  }

  connect() {
    this.wanted = true;
    clearTimeout(this.timer);
    if (this.ws) {
      const old = this.ws;
      this.ws = null;
      old.onclose = null;
      old.close(1000, "reconnect");
    }
    this.ready = false;
    this.onStatus({ state: "connecting", attempt: this.attempt });
    const ws = (this.ws = new WebSocket(this.url));
    ws.binaryType = "arraybuffer";
    ws.onopen = () => ws.send(JSON.stringify(this.startMessage()));
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") {
        this.onAudio(e.data);
        return;
      }
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch {
        return; // the server only sends JSON; ignore anything else rather than crash the page
      }
      if (ev.type === "session.ready") {
        this.ready = true;
        this.attempt = 0; // a good session resets the back-off
        this.onStatus({ state: "ready", sessionId: ev.session_id });
      }
      this.onEvent(ev);
    };
    ws.onclose = (e) => this.closed(ws, e);
  }

  closed(ws, e) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.ready = false;
    if (!this.wanted) {
      this.onStatus({ state: "closed", reason: "disconnected" });
      return;
    }
    // Retrying cannot fix a wrong token or user id; say so and wait for the user.
    if (e.code === CLOSE_UNAUTHORIZED || e.code === CLOSE_BAD_START) {
      this.onStatus({ state: "failed", code: e.code, reason: e.reason || "refused by the server" });
      return;
    }
    const delayMs = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt) * (0.8 + Math.random() * 0.4);
    this.attempt += 1;
    this.onStatus({ state: "retrying", attempt: this.attempt, delayMs, code: e.code });
    this.timer = setTimeout(() => this.connect(), delayMs);
  }

  /** Reconnect now (the user asked), skipping the back-off wait. */
  retryNow() {
    this.attempt = 0;
    this.connect();
  }

  send(obj) {
    if (!this.ready) return false;
    this.ws.send(JSON.stringify(obj));
    return true;
  }

  sendAudio(buffer) {
    // Drop microphone frames while disconnected or badly backed up: stale audio is worse than none.
    if (!this.ready || this.ws.bufferedAmount > 1 << 20) return false;
    this.ws.send(buffer);
    return true;
  }

  close() {
    this.wanted = false;
    clearTimeout(this.timer);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "session.end" }));
    if (this.ws) this.ws.close(1000, "bye");
  }
}
