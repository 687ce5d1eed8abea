// The memory panel: list, search and delete the user's long-term memories
// through the HTTP API on the same port (GET/DELETE /api/memory).

import { el } from "./dom.js";

export class MemoryPanel {
  /**
   * @param {object} opts
   * @param {HTMLElement} opts.list the <ul> to fill
   * @param {HTMLElement} opts.status a line for counts and errors
   * @param {() => string} opts.userId
   * @param {() => string|null} opts.token
   * @param {(n: number) => void} [opts.onLoaded] called with the number of items shown
   */
  constructor({ list, status, userId, token, onLoaded = () => {} }) {
    Object.assign(this, { list, status, userId, token, onLoaded });
    this.query = "";
    this.loading = null;
  }

  headers() {
    const token = this.token();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async call(method, path, params) {
    const qs = new URLSearchParams({ user_id: this.userId(), ...params });
    const res = await fetch(`${path}?${qs}`, { method, headers: this.headers() });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      const message = (body.error && body.error.message) || `${res.status} ${res.statusText}`;
      throw new Error(res.status === 401 ? "not authorised: open the page with ?token=YOUR_TOKEN" : message);
    }
    return body;
  }

  /** Reload the list (a search when `query` is set). */
  async refresh(query = this.query) {
    this.query = query.trim();
    this.status.textContent = "Loading…";
    // Only the latest request may draw: an older, slower answer must not overwrite it.
    const mine = (this.loading = {});
    try {
      const body = await this.call("GET", "/api/memory", this.query ? { q: this.query } : { limit: "100" });
      if (mine !== this.loading) return;
      this.render(body.items || []);
    } catch (err) {
      if (mine === this.loading) this.status.textContent = `Could not load memories: ${err.message}`;
    }
  }

  render(items) {
    this.list.replaceChildren(...items.map((item) => this.row(item)));
    const what = this.query ? `matching “${this.query}”` : "stored";
    this.status.textContent = items.length ? `${items.length} ${what}` : this.query ? "Nothing matches." : "No memories yet.";
    this.onLoaded(items.length);
  }

  row(item) {
    // Memory text came from conversations: textContent only, never innerHTML.
    const when = item.created_at ? new Date(item.created_at * 1000).toLocaleString() : "";
    const del = el("button", { class: "icon danger", type: "button", title: "Delete this memory", "aria-label": "Delete" }, "✕");
    const li = el(
      "li",
      { class: "memory-item", "data-memory-id": item.id },
      el("p", { class: "memory-text" }, item.text),
      el("p", { class: "memory-meta" }, [item.kind, when].filter(Boolean).join(" · ")),
      del,
    );
    del.addEventListener("click", () => this.remove(item.id, li, del));
    return li;
  }

  async remove(id, li, button) {
    button.disabled = true;
    try {
      await this.call("DELETE", `/api/memory/${encodeURIComponent(id)}`, {});
      li.remove();
      const left = this.list.children.length;
      this.status.textContent = `Deleted. ${left} left${this.query ? " in these results" : ""}.`;
      this.onLoaded(left);
    } catch (err) {
      button.disabled = false;
      this.status.textContent = `Could not delete: ${err.message}`;
    }
  }
}
