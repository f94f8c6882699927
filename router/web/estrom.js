// The live tail page: registers queries with estrom.register and subscribes to docs-for-<ID>
// itself, over the router's WebSocket (same origin). The URL (?i=..&q=.. or ?s=..) reopens it.
"use strict";

const DOCS_SHOWN = 1000; // per tail; older documents leave the page
const BUFFER_LIMIT = 1000; // per paused tail; beyond it the oldest are dropped, and counted
// Rows drawn per second at most, per tail: what a person can follow. Every document is counted
// as it arrives; the page draws once per animation frame, the newest of what arrived since the
// last frame up to this rate (a burst of this many at once), and says "showing N of M".
const ROWS_PER_SECOND = 100;
const RATE_WINDOW_MS = 5000;
// Named documents remembered per tail, to know a sender's resend (as Tailor does).
const RESEND_HORIZON_MS = 300000;
const RESENDS_REMEMBERED = 20000;
// Errors that pass: Beater (which serves estrom.*) or the engine is not back yet.
const TRANSIENT = new Set(["wamp.error.no_such_procedure", "estrom.error.unavailable"]);

const tails = [];
let session = null;
let current = null; // the tail the keys act on: the last one clicked, else the first

// A JSON object is query DSL; anything else is a Lucene query string (as Tailor reads `q`).
function parseQuery(text) {
  if (text.trim().startsWith("{")) {
    try {
      const value = JSON.parse(text);
      if (value && typeof value === "object" && !Array.isArray(value)) return value;
    } catch (e) {
      // not JSON: a Lucene range such as {a TO b}
    }
  }
  return text;
}

// What a row shows of a document, each the first of its names that it holds (as estrom tail).
const TIME_FIELDS = ["@timestamp", "timestamp", "time"];
const LEVEL_FIELDS = ["level", "log.level", "severity"];
const MESSAGE_FIELDS = ["message", "msg", "log", "event.original"];
const COLUMNS = ["service", "host"]; // between the level and the message, unless chosen
// The histogram: matches a second over the last 5 minutes, or per 10 seconds over the last 15,
// stacked by level. Every second of the last 15 minutes is kept, so either draws at once.
const WINDOWS = { "5m": { seconds: 300, bar: 1, label: "5 min" }, "15m": { seconds: 900, bar: 10, label: "15 min" } };
const KEPT_SECONDS = 900;
// The field list: with the store, estrom.summary counts these many fields' top values (and
// these many numbers' statistics) first; the others are counted from the live hits only.
const STORED_FIELDS = 10;
const FACET_SHOWN = 5; // top values shown per unfolded field
const FIELDS_SHOWN = 200; // fields listed, most present first
const REFINED_LAST = 100; // stored documents a refined query opens with, with the store
const SVG = "http://www.w3.org/2000/svg";

// A level's stack in the histogram.
function levelKind(level) {
  if (["error", "err", "fatal", "critical", "crit", "alert", "emerg"].includes(level)) return "error";
  if (["warn", "warning"].includes(level)) return "warn";
  return "other";
}

// source[name], or by the dotted path a.b.c through nested objects.
function lookup(source, name) {
  if (source && typeof source === "object" && !Array.isArray(source)) {
    if (Object.prototype.hasOwnProperty.call(source, name)) return source[name];
    const dot = name.indexOf(".");
    if (dot > 0) return lookup(source[name.slice(0, dot)], name.slice(dot + 1));
  }
  return undefined;
}

// The first of `names` the document holds as a single value (not an object or array).
function firstOf(source, names) {
  return firstNamed(source, names)[1];
}

// [name, value] of the first of `names` the document holds as a single value.
function firstNamed(source, names) {
  for (const name of names) {
    const value = lookup(source, name);
    if (value !== undefined && value !== null && typeof value !== "object") return [name, value];
  }
  return [null, undefined];
}

// `into` gets `text`, its parts the engine highlighted (marks.js) in <mark>.
function appendMarked(into, text, marks) {
  if (!marks) {
    into.append(text);
    return;
  }
  for (const piece of marks) {
    if (!piece.marked) {
      into.append(piece.text);
      continue;
    }
    const mark = document.createElement("mark");
    mark.textContent = piece.text;
    into.append(mark);
  }
}

// The hit as pretty JSON in `pre`, the values the engine highlighted marked in place.
function showHit(pre, hit) {
  const highlight = hit.highlight;
  if (!highlight || typeof highlight !== "object") {
    pre.textContent = JSON.stringify(hit, null, 2);
    return;
  }
  const marked = [];
  const walk = (value, path) => {
    if (typeof value === "string") {
      const marks = marksOf(highlight, path, value);
      if (!marks) return value;
      marked.push(marks);
      return "\ue000" + (marked.length - 1) + "\ue001"; // replaced below
    }
    if (Array.isArray(value)) return value.map((item) => walk(item, path));
    if (value && typeof value === "object") {
      const out = {};
      for (const [key, inner] of Object.entries(value)) out[key] = walk(inner, path ? path + "." + key : key);
      return out;
    }
    return value;
  };
  const { highlight: _, ...rest } = hit;
  const text = JSON.stringify({ ...rest, _source: walk(hit._source, "") }, null, 2);
  const parts = text.split(/"\ue000(\d+)\ue001"/);
  parts.forEach((part, at) => {
    if (at % 2 === 0) {
      pre.append(part);
      return;
    }
    pre.append('"');
    appendMarked(pre, "", marked[Number(part)].map((piece) => ({ ...piece, text: JSON.stringify(piece.text).slice(1, -1) })));
    pre.append('"');
  });
}

// A document's own time as a Date (ISO text, or epoch milliseconds or seconds), else null.
function documentTime(value) {
  if (value === undefined) return null;
  const date = typeof value === "number" ? new Date(value < 1e11 ? value * 1000 : value) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function clock(date) {
  return date.toTimeString().slice(0, 8) + "." + String(date.getMilliseconds()).padStart(3, "0");
}

function errorText(error) {
  if (error && error.args && error.args.length) return error.args[0];
  if (error && error.error) return error.error;
  return String(error);
}

// A cursor (estrom/cursor.py): 20 hex digits, the milliseconds when Beater took the hit (12), a
// sequence (4) and the Beater that took it (4); one Beater's hits of an index arrive in cursor
// order. These two read it; nothing else here does.
function beaterOf(cursor) {
  return typeof cursor === "string" && cursor.length === 20 ? cursor.slice(16) : null;
}

function cursorMs(cursor) {
  return typeof cursor === "string" && cursor.length === 20 ? parseInt(cursor.slice(0, 12), 16) : null;
}

// The fields the store's summary counts first: levels and the usual columns, then by name;
// never a time or a message (each value is its own).
function storedFields(names) {
  const skip = new Set([...TIME_FIELDS, ...MESSAGE_FIELDS]);
  const first = [...LEVEL_FIELDS, ...COLUMNS].filter((name) => names.includes(name));
  const rest = names.filter((name) => !skip.has(name) && !first.includes(name));
  return [...first, ...rest].slice(0, STORED_FIELDS);
}

function share(count, of) {
  if (!of) return "–";
  const percent = (100 * count) / of;
  return (percent >= 10 || percent === 0 ? percent.toFixed(0) : percent.toFixed(1)) + "%";
}

function number(value) {
  return Number.isInteger(value) ? value.toLocaleString("en") : value.toPrecision(4).replace(/\.?0+$/, "");
}

class Tail {
  constructor({ index, query, sid, last, columns, window, highlight }) {
    this.index = index;
    this.query = query; // as typed; null when opened by ID
    this.sid = sid || null; // of the stream: with highlights, the ID registered for them
    this.asked = sid || null; // the ID it was opened by, if so
    this.highlight = highlight === true; // the engine's highlights on its hits
    this.switching = null; // hits of the ID switched to, while the other one still streams
    this.lastOf = new Map(); // Beater -> the greatest cursor received from it
    this.last = last || 0; // stored documents to show first, when it opens (needs the store)
    this.cursor = null; // of the newest hit received: a reconnect resumes after it
    this.holding = null; // live hits, kept back while the backlog is read
    this.backlogCursors = new Map(); // by Beater: cursors of backlog hits not yet seen live
    this.named = new Map(); // named documents' IDs -> {cursor, at} of the copy shown, oldest first
    this.seconds = new Map(); // the histogram: second -> {error, warn, other}
    this.window = WINDOWS[window] ? window : "5m";
    this.columns = Array.isArray(columns) ? columns : null; // null: COLUMNS, when present
    this.facets = new Facets();
    this.expanded = new Set([...LEVEL_FIELDS, ...COLUMNS]); // fields whose top values show
    this.stored = null; // whether this estrom keeps a store; null until asked
    this.seam = null; // what estrom.summary counted: {cursor, pending}
    this.summarized = false;
    this.byId = query === null;
    this.count = 0; // documents received
    this.drawn = 0; // of them, drawn as rows
    this.arrivals = []; // [second, documents], oldest first, within RATE_WINDOW_MS
    this.pending = []; // arrived since the last frame: {hit, at}
    this.allowance = ROWS_PER_SECOND;
    this.lastFrame = null;
    this.frame = 0; // the requested animation frame, if any
    this.buffer = [];
    this.dropped = 0;
    this.paused = false;
    this.newestOnTop = false;
    this.subscription = null;
    this.el = document.getElementById("tail-template").content.firstElementChild.cloneNode(true);
    this.list = this.el.querySelector(".docs");
    this.el.querySelector(".pause").addEventListener("click", () => this.togglePause());
    this.el.querySelector(".order").addEventListener("click", () => this.toggleOrder());
    this.el.querySelector(".clear").addEventListener("click", () => this.clear());
    this.el.querySelector(".close").addEventListener("click", () => this.close());
    this.el.querySelector(".show-fields").addEventListener("click", () => this.toggleFields());
    this.el.querySelector(".span").addEventListener("click", () => span(this));
    this.el.querySelector(".window").addEventListener("click", () => this.toggleWindow());
    this.el.querySelector(".marks").addEventListener("click", () => this.toggleHighlight());
    this.showHighlight();
    this.el.querySelector(".field-list").addEventListener("click", (event) => this.fieldClicked(event));
    this.el.querySelector(".field-list").addEventListener("change", (event) => this.columnChosen(event));
    this.showWindow();
    this.el.addEventListener("pointerdown", () => (current = this)); // the keys act on it
    this.showTitle();
  }

  // j / k: the next or the previous row; Enter unfolds or folds it.
  select(step) {
    const rows = [...this.list.querySelectorAll("li:not(.note)")];
    if (!rows.length) return;
    const at = rows.findIndex((row) => row.classList.contains("selected"));
    const next = at < 0 ? (step > 0 ? 0 : rows.length - 1) : Math.min(rows.length - 1, Math.max(0, at + step));
    if (at >= 0) rows[at].classList.remove("selected");
    rows[next].classList.add("selected");
    rows[next].scrollIntoView({ block: "nearest" });
  }

  unfoldSelected() {
    const details = this.list.querySelector("li.selected details");
    if (details) details.open = !details.open;
  }

  showTitle() {
    this.el.querySelector(".tail-index").textContent = this.index || "";
    this.el.querySelector(".tail-query").textContent =
      typeof this.query === "string" ? this.query : JSON.stringify(this.query);
    this.el.querySelector(".tail-id").textContent = this.sid || "…";
    if (this.sid) this.el.dataset.sid = this.sid;
  }

  // Register (or look up) and subscribe; again after every reconnect, then resume after the
  // last hit received (the store gives what was sent meanwhile).
  async attach(session) {
    this.sid = await this.streamId(session);
    const resume = this.cursor !== null;
    const options = resume ? { after: this.cursor } : this.last ? { last: this.last } : null;
    const summarize = !this.summarized;
    if (options || summarize) this.holding = [];
    this.subscription = await session.subscribe("docs-for-" + this.sid, (hits, kwargs) => this.event(hits, kwargs));
    if (summarize) {
      try {
        await this.summarize(session);
      } catch (error) {
        this.holding = null;
        session.unsubscribe(this.subscription).catch(() => {});
        throw error;
      }
      if (!options) this.release();
    }
    if (options) {
      try {
        await this.backfill(session, options);
      } catch (error) {
        if (resume && error.error === "estrom.error.no_store") {
          this.note("documents sent while disconnected are missing here (estrom keeps no store)");
        } else {
          this.holding = null;
          session.unsubscribe(this.subscription).catch(() => {});
          throw error;
        }
      } finally {
        this.release();
      }
    }
    this.last = 0; // the backlog was shown: a reconnect resumes instead
    this.el.dataset.subscribed = "";
    this.showTitle();
    this.showError(null);
  }

  // The ID to stream: registered (with highlights, if asked), or looked up; the same query's
  // ID for highlights when they are asked of one opened by its ID.
  async streamId(session) {
    const marked = this.highlight ? [{ highlight: true }] : [];
    if (!this.byId) return session.call("estrom.register", [this.index, parseQuery(this.query), ...marked]);
    const found = await session.call("estrom.lookup", [this.asked]);
    this.index = found.index;
    this.query = typeof found.query === "string" ? found.query : JSON.stringify(found.query);
    if (this.highlight === (found.highlight === true)) return this.asked;
    return session.call("estrom.register", [found.index, found.query, ...marked]);
  }

  event(hits, kwargs) {
    if (kwargs && kwargs.ended) this.ended(kwargs.ended);
    else if (this.switching) this.switching.push(...hits);
    else this.live(hits);
  }

  // Highlights on or off: the same query's other ID. Subscribed to it first, its hits held
  // while the old one still streams; then those the old one gave (by each Beater's cursor)
  // are left out.
  async toggleHighlight() {
    this.highlight = !this.highlight;
    this.showHighlight();
    saveToUrl();
    const current = session;
    if (!current || !this.subscription) return;
    const old = this.subscription;
    this.switching = [];
    try {
      const sid = await this.streamId(current);
      this.subscription = await current.subscribe("docs-for-" + sid, (hits, kwargs) => this.event(hits, kwargs));
      this.sid = sid;
      this.showTitle();
      await current.unsubscribe(old).catch(() => {});
    } catch (error) {
      this.showError(errorText(error));
    } finally {
      const held = this.switching || [];
      this.switching = null;
      const fresh = held.filter((hit) => {
        const beater = beaterOf(hit._cursor);
        return beater === null || !this.lastOf.has(beater) || hit._cursor > this.lastOf.get(beater);
      });
      if (fresh.length) this.live(fresh);
    }
  }

  showHighlight() {
    const button = this.el.querySelector(".marks");
    button.setAttribute("aria-pressed", String(this.highlight));
    button.textContent = this.highlight ? "Why: on" : "Why: off";
  }

  // With the store, the histogram starts from the engine's count of the last 5 minutes' matches
  // (estrom.summary); live hits it counted (its cursor and before, but batches then in flight)
  // are not counted again.
  async summarize(session) {
    let summary;
    try {
      // First the fields the store maps (which it can count), then one summary of them all.
      const { fields } = await session.call("estrom.summary", [this.sid, { fields: true, since: "1s" }]);
      const asked = { histogram: "1s", since: KEPT_SECONDS + "s", split: "level", k: 10 };
      const by = storedFields(fields.filter((field) => field.by).map((field) => field.name));
      const stats = storedFields(fields.filter((field) => field.stats).map((field) => field.name));
      if (by.length) asked.by = by;
      if (stats.length) asked.stats = stats;
      summary = await session.call("estrom.summary", [this.sid, asked]);
    } catch (error) {
      if (error.error === "estrom.error.no_store") {
        this.summarized = true;
        this.stored = false;
        return;
      }
      throw error;
    }
    this.summarized = true;
    this.stored = true;
    this.seam = { cursor: summary.cursor || "", pending: summary.pending || [] };
    this.facets.clear(new Date(summary.since));
    this.facets.addStored(summary);
    for (const [time, count, levels] of summary.histogram.buckets) {
      const second = Math.floor(Date.parse(time) / 1000);
      let rest = count;
      for (const [level, n] of Object.entries(levels || {})) {
        this.countAt(second, levelKind(level.toLowerCase()), n);
        rest -= n;
      }
      if (rest > 0) this.countAt(second, "other", rest);
    }
  }

  countAt(second, kind, n) {
    let counts = this.seconds.get(second);
    if (!counts) this.seconds.set(second, (counts = { error: 0, warn: 0, other: 0 }));
    counts[kind] += n;
  }

  // Every hit counts in the histogram (by the second Beater took it) and the field list, but
  // those the summary had.
  countHits(hits) {
    const seam = this.seam;
    for (const hit of hits) {
      const cursor = hit._cursor;
      const taken = cursorMs(cursor);
      if (seam && taken !== null && cursor <= seam.cursor && !seam.pending.some(([a, b]) => a <= cursor && cursor <= b)) {
        continue;
      }
      const second = Math.floor((taken !== null ? taken : Date.now()) / 1000);
      const source = hit._source || {};
      const level = firstOf(source, LEVEL_FIELDS);
      this.countAt(second, levelKind(typeof level === "string" ? level.toLowerCase() : ""), 1);
      this.facets.add(source);
    }
  }

  // Bars of the window, stacked: errors, warnings, the rest; each a second, or 10.
  drawHistogram(now) {
    const { seconds, bar, label } = WINDOWS[this.window];
    const last = Math.floor(now / 1000);
    for (const second of this.seconds.keys()) if (second <= last - KEPT_SECONDS) this.seconds.delete(second);
    const first = Math.floor((last - seconds + 1) / bar) * bar;
    const bars = new Map(); // bar's start -> counts
    for (const [second, counts] of this.seconds) {
      if (second < first) continue;
      const start = Math.floor(second / bar) * bar;
      let sum = bars.get(start);
      if (!sum) bars.set(start, (sum = { error: 0, warn: 0, other: 0 }));
      sum.error += counts.error;
      sum.warn += counts.warn;
      sum.other += counts.other;
    }
    let total = 0;
    let highest = 1;
    for (const counts of bars.values()) {
      const n = counts.error + counts.warn + counts.other;
      total += n;
      highest = Math.max(highest, n);
    }
    const svg = this.el.querySelector(".histogram");
    svg.setAttribute("viewBox", `0 0 ${Math.ceil(seconds / bar)} 40`);
    const rects = [];
    for (const [start, counts] of bars) {
      let y = 40;
      for (const kind of ["error", "warn", "other"]) {
        if (!counts[kind]) continue;
        const height = (counts[kind] / highest) * 40;
        y -= height;
        const rect = document.createElementNS(SVG, "rect");
        rect.setAttribute("x", String((start - first) / bar));
        rect.setAttribute("y", y.toFixed(2));
        rect.setAttribute("width", "1");
        rect.setAttribute("height", height.toFixed(2));
        rect.setAttribute("class", kind);
        rects.push(rect);
      }
    }
    svg.replaceChildren(...rects);
    svg.dataset.total = String(total);
    const per = bar === 1 ? "a second" : `in ${bar} seconds`;
    svg.setAttribute("aria-label", `${total} matches in the last ${label}, ${highest} at most ${per}`);
    this.el.querySelector(".in-window").textContent = total.toLocaleString("en");
  }

  toggleWindow() {
    this.window = this.window === "5m" ? "15m" : "5m";
    this.showWindow();
    this.drawHistogram(Date.now());
    saveToUrl();
  }

  showWindow() {
    const button = this.el.querySelector(".window");
    button.textContent = WINDOWS[this.window].label;
    button.setAttribute("aria-label", `window: the last ${WINDOWS[this.window].label}; change`);
  }

  // The stored hits the options ask for, a page at a time, oldest first. Subscribed first: live
  // hits wait meanwhile, and those the backlog had are skipped.
  async backfill(session, options) {
    let answer = await session.call("estrom.backlog", [this.sid, options]);
    if (answer.gap) {
      this.note(
        options.after
          ? "more documents were sent while disconnected than a backlog holds: the newest follow"
          : "more stored documents match than a backlog holds: the newest follow",
      );
    }
    for (;;) {
      for (const hit of answer.hits) {
        const beater = beaterOf(hit._cursor);
        if (beater === null) continue;
        if (!this.backlogCursors.has(beater)) this.backlogCursors.set(beater, []);
        this.backlogCursors.get(beater).push(hit._cursor);
      }
      if (answer.hits.length) this.receive(answer.hits);
      if (!answer.next) return;
      answer = await session.call("estrom.backlog", [this.sid, { page: answer.next }]);
    }
  }

  release() {
    const held = this.holding || [];
    this.holding = null;
    if (held.length) this.live(held);
  }

  live(hits) {
    if (this.holding) {
      this.holding.push(...hits);
      return;
    }
    const fresh = this.backlogCursors.size ? hits.filter((hit) => !this.inBacklog(hit._cursor)) : hits;
    if (fresh.length) this.receive(fresh);
  }

  // Whether a live hit is one the backlog gave; a Beater's backlog cursors below it are done.
  inBacklog(cursor) {
    const beater = beaterOf(cursor);
    const cursors = beater === null ? null : this.backlogCursors.get(beater);
    if (!cursors) return false;
    let passed = 0;
    while (passed < cursors.length && cursors[passed] < cursor) passed++;
    const found = cursors[passed] === cursor;
    cursors.splice(0, passed + (found ? 1 : 0));
    if (!cursors.length) this.backlogCursors.delete(beater);
    return found;
  }

  // Attach, retrying while the failure is transient and this session lasts.
  async keepAttached(current) {
    for (let delay = 500; session === current && tails.includes(this); delay = Math.min(delay * 1.5, 5000)) {
      try {
        await this.attach(current);
        return;
      } catch (error) {
        if (!TRANSIENT.has(error.error)) {
          this.showError(errorText(error));
          return;
        }
        this.showError(`${errorText(error)} — retrying`);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  // Its query was taken out of percolation (the search engine can no longer run it): no hit
  // follows. A reconnect registers it again, and shows why if the engine still refuses it.
  ended(message) {
    this.showError(message);
    delete this.el.dataset.subscribed;
    if (this.subscription && session) session.unsubscribe(this.subscription).catch(() => {});
    this.subscription = null;
  }

  // A document its sender named (a _bulk action's _id) comes again when the sender did not hear
  // it was taken and sent it again: that copy, under another cursor, is not shown twice.
  unseen(hits) {
    const now = Date.now();
    for (const [id, first] of this.named) {
      if (first.at >= now - RESEND_HORIZON_MS && this.named.size <= RESENDS_REMEMBERED) break;
      this.named.delete(id);
    }
    return hits.filter((hit) => {
      const first = this.named.get(hit._id);
      if (first !== undefined) return first.cursor === hit._cursor;
      if (hit._named === true) this.named.set(hit._id, { cursor: hit._cursor, at: now });
      return true;
    });
  }

  // Count at once, draw at the next animation frame.
  receive(hits) {
    hits = this.unseen(hits);
    if (!hits.length) return;
    this.countHits(hits);
    const at = new Date();
    this.count += hits.length;
    const cursor = hits[hits.length - 1]._cursor;
    if (typeof cursor === "string") this.cursor = cursor;
    for (const hit of hits) {
      const beater = beaterOf(hit._cursor);
      if (beater !== null && !(this.lastOf.get(beater) >= hit._cursor)) this.lastOf.set(beater, hit._cursor);
    }
    const second = Math.floor(at.getTime() / 1000);
    const last = this.arrivals[this.arrivals.length - 1];
    if (last && last[0] === second) last[1] += hits.length;
    else this.arrivals.push([second, hits.length]);
    const into = this.paused ? this.buffer : this.pending;
    for (const hit of hits) into.push({ hit, at });
    if (this.paused && this.buffer.length > BUFFER_LIMIT) {
      this.dropped += this.buffer.length - BUFFER_LIMIT;
      this.buffer.splice(0, this.buffer.length - BUFFER_LIMIT);
    } else if (this.pending.length > ROWS_PER_SECOND) {
      this.pending.splice(0, this.pending.length - ROWS_PER_SECOND); // never drawn: too many
    }
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame((now) => this.draw(now));
  }

  draw(now) {
    this.frame = 0;
    if (this.lastFrame !== null) {
      this.allowance = Math.min(ROWS_PER_SECOND, this.allowance + ((now - this.lastFrame) / 1000) * ROWS_PER_SECOND);
    }
    this.lastFrame = now;
    const rows = Math.min(this.pending.length, Math.floor(this.allowance));
    if (rows > 0) {
      this.allowance -= rows;
      this.insert(this.pending.slice(-rows).map(({ hit, at }) => this.row(hit, at)));
      this.drawn += rows;
    }
    this.pending = [];
    this.showCounts();
  }

  // A row: the document's own time (else when it arrived), its level, a few fields, then its
  // message, which takes the rest of the width and wraps rather than being cut off.
  row(hit, at) {
    const item = document.createElement("li");
    item.dataset.row = "";
    item.hit = hit; // to draw it again with other columns
    item.at = at;
    const source = hit._source || {};
    const [levelField, level] = firstNamed(source, LEVEL_FIELDS);
    if (typeof level === "string") item.className = "level-" + level.toLowerCase();
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    const time = document.createElement("time");
    const own = firstOf(source, TIME_FIELDS);
    const when = documentTime(own) || at;
    time.dateTime = when.toISOString();
    time.textContent = clock(when);
    time.title = own === undefined ? "arrived " + at.toISOString() : String(own);
    summary.append(time);
    if (level !== undefined) {
      const shown = document.createElement("span");
      shown.className = "level";
      const marks = marksOf(hit.highlight, levelField, level);
      appendMarked(shown, String(level).toUpperCase(), marks && marks.map((piece) => ({ ...piece, text: piece.text.toUpperCase() })));
      summary.append(shown);
    }
    const used = new Set([...TIME_FIELDS, ...LEVEL_FIELDS]);
    const chosen = this.columns !== null;
    for (const name of this.shownColumns()) {
      let value = lookup(source, name);
      if (Array.isArray(value)) value = value.join(", ");
      if (value === undefined || value === null || typeof value === "object") {
        if (!chosen) continue;
        value = ""; // a chosen column keeps its place
      }
      used.add(name);
      const field = document.createElement("span");
      field.className = "field";
      field.title = name;
      appendMarked(field, String(value), marksOf(hit.highlight, name, value));
      summary.append(field);
    }
    const text = document.createElement("span");
    text.className = "msg";
    const [named, message] = firstNamed(source, MESSAGE_FIELDS);
    if (message !== undefined) {
      appendMarked(text, String(message), marksOf(hit.highlight, named, message));
    } else {
      // No message: the other fields, so that nothing is hidden.
      const rest = {};
      for (const [key, value] of Object.entries(source)) if (!used.has(key)) rest[key] = value;
      text.textContent = JSON.stringify(rest);
    }
    summary.append(text);
    details.append(summary);
    // The whole hit, pretty-printed, made when first opened.
    details.addEventListener(
      "toggle",
      () => {
        const pre = document.createElement("pre");
        showHit(pre, hit);
        details.append(pre);
      },
      { once: true },
    );
    item.append(details);
    return item;
  }

  // Rows in the order they arrived; one layout read and one write per frame.
  insert(items) {
    if (this.newestOnTop) {
      this.list.prepend(...items.reverse());
      while (this.list.children.length > DOCS_SHOWN) this.list.lastElementChild.remove();
    } else {
      const atBottom = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 4;
      this.list.append(...items);
      while (this.list.children.length > DOCS_SHOWN) this.list.firstElementChild.remove();
      if (atBottom) this.list.scrollTop = this.list.scrollHeight; // follow, like tail -f
    }
  }

  note(text) {
    const item = document.createElement("li");
    item.className = "note";
    item.textContent = "— " + text + " —";
    this.insert([item]);
  }

  showCounts() {
    this.el.querySelector(".count").textContent = String(this.count);
    const shown = this.el.querySelector(".shown");
    const waiting = this.paused ? this.buffer.length : 0;
    shown.hidden = this.drawn + waiting >= this.count;
    shown.textContent = `· showing ${this.drawn} of ${this.count}`;
    const buffered = this.el.querySelector(".buffered");
    buffered.hidden = !this.paused;
    buffered.textContent = `· ${this.buffer.length} waiting`;
    const dropped = this.el.querySelector(".dropped");
    dropped.hidden = this.dropped === 0;
    dropped.textContent = `· ${this.dropped} dropped while paused`;
  }

  showRate(now) {
    const oldest = Math.floor((now - RATE_WINDOW_MS) / 1000);
    while (this.arrivals.length && this.arrivals[0][0] <= oldest) this.arrivals.shift();
    const documents = this.arrivals.reduce((sum, [, n]) => sum + n, 0);
    const rate = (documents / (RATE_WINDOW_MS / 1000)).toFixed(1);
    this.el.querySelector(".rate").textContent = rate;
    this.el.querySelector(".now").textContent = `${rate}/s now`;
  }

  // The field list: f, or the Fields button.
  toggleFields() {
    const aside = this.el.querySelector(".fields");
    aside.hidden = !aside.hidden;
    this.el.querySelector(".show-fields").setAttribute("aria-expanded", String(!aside.hidden));
    if (!aside.hidden) this.drawFields();
  }

  // Every field seen, most present first: how many documents hold it; unfolded, its top values
  // with counts and shares, and a number's min, avg and max. Redrawn once a second while shown.
  drawFields() {
    const aside = this.el.querySelector(".fields");
    if (aside.hidden) return;
    const facets = this.facets;
    const since = this.stored ? "since " + clock(facets.since) + " (the store, then live)" : "since " + clock(facets.since);
    aside.querySelector(".fields-since").textContent = `${facets.total.toLocaleString("en")} documents ${since}`;
    const columns = this.shownColumns();
    const fields = [...facets.fields.values()]
      .sort((a, b) => b.count - a.count || (a.name < b.name ? -1 : 1))
      .slice(0, FIELDS_SHOWN);
    const items = fields.map((field) => {
      const item = document.createElement("li");
      item.dataset.field = field.name;
      const head = document.createElement("div");
      head.className = "field-head";
      const name = document.createElement("button");
      name.type = "button";
      name.className = "field-name";
      name.textContent = field.name;
      const open = this.expanded.has(field.name);
      name.setAttribute("aria-expanded", String(open));
      const count = document.createElement("span");
      count.className = "field-count";
      const outOf = facets.outOf(field);
      count.textContent = `${field.count.toLocaleString("en")} · ${share(field.count, outOf)}`;
      count.title = field.fromStore || !facets.stored ? "documents with it" : "documents with it, since the tail opened";
      const column = document.createElement("label");
      column.className = "column-choice";
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = columns.includes(field.name);
      box.setAttribute("aria-label", `${field.name} as a column`);
      column.append(box, "col");
      head.append(name, count, column);
      item.append(head);
      if (open) item.append(this.fieldDetail(field, outOf));
      return item;
    });
    if (facets.fields.size > FIELDS_SHOWN || facets.fieldsCapped) {
      const more = document.createElement("li");
      more.className = "note";
      more.textContent = `${facets.fields.size - fields.length} more fields not listed`;
      items.push(more);
    }
    aside.querySelector(".field-list").replaceChildren(...items);
  }

  fieldDetail(field, outOf) {
    const detail = document.createElement("div");
    detail.className = "field-detail";
    if (field.numbers) {
      const numbers = document.createElement("p");
      numbers.className = "numbers";
      const avg = field.sum / field.numbers;
      numbers.textContent = `min ${number(field.min)} · avg ${number(avg)} · max ${number(field.max)}`;
      detail.append(numbers);
    }
    const values = document.createElement("ol");
    values.className = "values";
    for (const [text, count] of this.facets.top(field, FACET_SHOWN)) {
      const item = document.createElement("li");
      const value = document.createElement("button");
      value.type = "button";
      value.className = "value";
      value.dataset.value = text;
      value.textContent = text === "" ? '""' : text;
      value.title = field.cut.has(text) ? "longer than shown: no filter" : "filter for or out";
      if (field.cut.has(text)) value.disabled = true;
      const n = document.createElement("span");
      n.className = "n";
      n.textContent = count.toLocaleString("en");
      const part = document.createElement("span");
      part.className = "share";
      part.textContent = share(count, outOf);
      const bar = document.createElement("span");
      bar.className = "share-bar";
      bar.style.width = outOf ? ((100 * count) / outOf).toFixed(1) + "%" : "0";
      item.append(value, n, part, bar);
      values.append(item);
    }
    detail.append(values);
    if (field.others) {
      const others = document.createElement("p");
      others.className = "others";
      others.textContent = field.capped
        ? `more than ${FACET_VALUES.toLocaleString("en")} values: ${field.others.toLocaleString("en")} counted together`
        : `${field.others.toLocaleString("en")} with other values`;
      detail.append(others);
    }
    return detail;
  }

  fieldClicked(event) {
    const target = event.target;
    if (!(target instanceof HTMLButtonElement)) return;
    const name = target.closest("li[data-field]").dataset.field;
    if (target.classList.contains("field-name")) {
      if (this.expanded.has(name)) this.expanded.delete(name);
      else this.expanded.add(name);
      this.drawFields();
    } else if (target.classList.contains("value")) {
      showValueMenu(this, name, target.dataset.value, target);
    }
  }

  columnChosen(event) {
    const box = event.target;
    if (!(box instanceof HTMLInputElement)) return;
    const name = box.closest("li[data-field]").dataset.field;
    const columns = this.shownColumns().filter((column) => column !== name);
    if (box.checked) columns.push(name);
    this.setColumns(columns);
  }

  // The columns between the level and the message: chosen, else COLUMNS.
  shownColumns() {
    return this.columns === null ? COLUMNS : this.columns;
  }

  // Rows drawn again with these columns; kept in the URL.
  setColumns(columns) {
    this.columns = columns;
    for (const item of this.list.querySelectorAll("li[data-row]")) {
      const row = this.row(item.hit, item.at);
      row.className = item.className; // keeps "selected"
      item.replaceWith(row);
    }
    saveToUrl();
  }

  // The same query, and the documents whose `field` holds (or does not hold) `text`: a new
  // panel beside this one, or this one, starting over.
  filter(field, text, negate, here) {
    const query = refine(parseQuery(this.query || ""), field, text, negate);
    const shown = typeof query === "string" ? query : JSON.stringify(query);
    const last = this.stored ? this.last || REFINED_LAST : 0;
    const tail = new Tail({
      index: this.index,
      query: shown,
      last,
      columns: this.columns,
      window: this.window,
      highlight: this.highlight,
    });
    if (here) {
      const at = tails.indexOf(this);
      this.close();
      tails.splice(at, 0, tail);
      const next = tails[at + 1];
      document.getElementById("tails").insertBefore(tail.el, next ? next.el : null);
      saveToUrl();
      if (session) tail.keepAttached(session);
    } else {
      open(tail);
    }
    if (document.body.dataset.layout === "one") span(tail);
    current = tail;
    return tail;
  }

  showError(message) {
    const error = this.el.querySelector(".tail-error");
    error.hidden = !message;
    error.textContent = message || "";
  }

  togglePause() {
    this.paused = !this.paused;
    this.el.querySelector(".pause").textContent = this.paused ? "Resume" : "Pause";
    if (this.paused) {
      this.el.dataset.paused = "";
      this.buffer.push(...this.pending.splice(0)); // what the next frame would have drawn waits too
    } else {
      delete this.el.dataset.paused;
      const waiting = this.buffer.splice(0).slice(-DOCS_SHOWN);
      this.insert(waiting.map(({ hit, at }) => this.row(hit, at)));
      this.drawn += waiting.length;
    }
    this.showCounts();
  }

  toggleOrder() {
    this.newestOnTop = !this.newestOnTop;
    this.el.querySelector(".order").textContent = this.newestOnTop ? "Newest at bottom" : "Newest on top";
    for (const item of Array.from(this.list.children).reverse()) this.list.append(item);
  }

  clear() {
    this.list.replaceChildren();
    this.facets.clear(new Date());
    this.drawFields();
    this.count = 0;
    this.drawn = 0;
    this.pending = [];
    this.buffer = [];
    this.dropped = 0;
    this.showCounts();
  }

  close() {
    if (this.frame) cancelAnimationFrame(this.frame);
    if (this.subscription && session) session.unsubscribe(this.subscription).catch(() => {});
    this.el.remove();
    tails.splice(tails.indexOf(this), 1);
    if (this.el.classList.contains("spanned")) delete document.body.dataset.layout;
    if (valueMenu.tail === this) hideValueMenu();
    saveToUrl();
  }
}

function saveToUrl() {
  const params = new URLSearchParams();
  for (const tail of tails) {
    if (tail.byId) {
      params.append("s", tail.asked);
    } else {
      if (params.getAll("i").at(-1) !== tail.index) params.append("i", tail.index);
      params.append("q", tail.query);
    }
    if (tail.columns !== null) params.append("c", tail.columns.join(","));
    if (tail.window !== "5m") params.append("h", tail.window);
    if (tail.highlight) params.append("why", "1");
  }
  const spanned = tails.findIndex((tail) => tail.el.classList.contains("spanned"));
  if (document.body.dataset.layout === "one" && spanned >= 0) params.append("one", String(spanned));
  const search = params.toString();
  history.replaceState(null, "", search ? "?" + search : location.pathname);
}

// ?i=a&q=x&q=y&s=ID: each q takes the i before it; each s opens a query by its ID. After a
// query, c=a,b are its columns, h=15m its histogram's window and why=1 its highlights; one=N
// shows the Nth alone.
function loadFromUrl() {
  let index = null;
  let one = null;
  for (const [name, value] of new URLSearchParams(location.search)) {
    const last = tails[tails.length - 1];
    if (name === "i") index = value;
    else if (name === "q" && index) open(new Tail({ index, query: value }));
    else if (name === "s") open(new Tail({ sid: value, query: null }));
    else if (name === "c" && last) last.columns = value.split(",").filter(Boolean);
    else if (name === "h" && last && WINDOWS[value]) {
      last.window = value;
      last.showWindow();
    } else if (name === "why" && last) {
      last.highlight = value === "1";
      last.showHighlight();
    } else if (name === "one") one = parseInt(value, 10);
  }
  if (index) document.getElementById("index").value = index;
  if (one !== null && tails[one]) span(tails[one]);
  saveToUrl();
}

// One query on the whole screen, or every query side by side again.
function span(tail) {
  const spanned = tail.el.classList.contains("spanned") && document.body.dataset.layout === "one";
  for (const other of tails) {
    other.el.classList.remove("spanned");
    other.el.querySelector(".span").textContent = "Full screen";
  }
  if (spanned) {
    delete document.body.dataset.layout;
  } else {
    document.body.dataset.layout = "one";
    tail.el.classList.add("spanned");
    tail.el.querySelector(".span").textContent = "All queries";
    current = tail;
  }
  saveToUrl();
}

// The menu a facet's value opens: filter for it or out, in a new panel or in this one.
const valueMenu = {
  el: document.getElementById("value-menu"),
  tail: null,
  field: null,
  text: null,
};

function showValueMenu(tail, field, text, button) {
  Object.assign(valueMenu, { tail, field, text });
  const menu = valueMenu.el;
  menu.querySelector(".value-menu-field").textContent = field;
  menu.querySelector(".value-menu-value").textContent = text;
  const box = button.getBoundingClientRect();
  menu.hidden = false;
  menu.style.left = Math.max(0, Math.min(window.innerWidth - menu.offsetWidth - 8, box.left + window.scrollX)) + "px";
  menu.style.top = box.bottom + window.scrollY + 2 + "px";
  menu.querySelector(".filter-for").focus();
}

function hideValueMenu() {
  valueMenu.el.hidden = true;
  valueMenu.tail = null;
}

for (const [selector, negate] of [
  [".filter-for", false],
  [".filter-out", true],
]) {
  valueMenu.el.querySelector(selector).addEventListener("click", () => {
    const { tail, field, text } = valueMenu;
    const here = valueMenu.el.querySelector(".value-menu-here").checked;
    hideValueMenu();
    if (tail && tails.includes(tail)) tail.filter(field, text, negate, here);
  });
}

document.addEventListener("pointerdown", (event) => {
  if (!valueMenu.el.hidden && !valueMenu.el.contains(event.target) && !event.target.closest(".value")) {
    hideValueMenu();
  }
});

// Keys, as in other readers: / the query, space pause or resume, j / k move, Enter unfold,
// f the field list, Escape back from one query on the whole screen.
document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "Escape" && !valueMenu.el.hidden) {
    hideValueMenu();
    return;
  }
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLButtonElement) {
    if (event.key === "Escape" && target instanceof HTMLInputElement) target.blur();
    return;
  }
  const tail = tails.includes(current) ? current : tails[0];
  if (event.key === "Escape" && document.body.dataset.layout === "one" && tail) {
    span(tail); // back to every query
  } else if (event.key === "/") {
    event.preventDefault();
    document.getElementById("query").focus();
  } else if (!tail) {
    return;
  } else if (event.key === " ") {
    event.preventDefault();
    tail.togglePause();
  } else if (event.key === "j" || event.key === "k") {
    tail.select(event.key === "j" ? 1 : -1);
  } else if (event.key === "Enter") {
    event.preventDefault();
    tail.unfoldSelected();
  } else if (event.key === "f") {
    tail.toggleFields();
  }
});

function place(tail) {
  tails.push(tail);
  document.getElementById("tails").append(tail.el);
  saveToUrl();
}

function open(tail) {
  place(tail);
  if (session) tail.keepAttached(session);
}

function showConnection(state, text) {
  const badge = document.getElementById("connection");
  badge.dataset.state = state;
  badge.textContent = text;
}

document.getElementById("new-tail").addEventListener("submit", async (event) => {
  event.preventDefault();
  const formError = document.getElementById("form-error");
  const index = document.getElementById("index").value.trim();
  const query = document.getElementById("query").value;
  const sid = document.getElementById("sid").value.trim();
  const last = parseInt(document.getElementById("last").value, 10) || 0;
  formError.hidden = true;
  if (!session) {
    formError.textContent = "not connected to the router yet";
    formError.hidden = false;
    return;
  }
  const tail = sid ? new Tail({ sid, query: null, last }) : new Tail({ index, query, last });
  try {
    await tail.attach(session); // an invalid query never becomes a tail
  } catch (error) {
    formError.textContent = errorText(error);
    formError.hidden = false;
    return;
  }
  place(tail);
});

setInterval(() => {
  const now = Date.now();
  for (const tail of tails) {
    tail.showRate(now);
    tail.drawHistogram(now);
    tail.drawFields();
  }
}, 1000);

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
// The router refuses a session without a valid token when it has a token file (ESTROM_TOKENS).
const NOT_AUTHENTICATED = "estrom.error.not_authenticated";
// This tab's token: kept while the tab lives (a reload keeps it), never in the URL.
const TOKEN = "estrom-token";
let connection = null;
let lostAt = null;

function connect() {
  const token = sessionStorage.getItem(TOKEN);
  const options = {
    url: `${scheme}//${location.host}/ws`,
    realm: "estrom",
    max_retries: -1,
    initial_retry_delay: 0.5,
    max_retry_delay: 5,
    retry_delay_growth: 1.5,
  };
  if (token) {
    options.authmethods = ["ticket"];
    options.onchallenge = () => token;
  }
  const current = new autobahn.Connection(options);
  current.onopen = (newSession) => {
    if (current !== connection) {
      // replaced while it was retrying (autobahn keeps a retry timer that close() leaves)
      current.close();
      return;
    }
    session = newSession;
    showConnection("connected", "connected");
    document.getElementById("sign-in").hidden = true;
    document.getElementById("sign-out").hidden = !token;
    for (const tail of tails) {
      if (lostAt) tail.note(`connection lost at ${clock(lostAt)}, back at ${clock(new Date())}`);
      tail.keepAttached(session);
    }
    lostAt = null;
  };
  current.onclose = (reason, details) => {
    if (current !== connection) return true; // replaced (signed in or out): let it go
    session = null;
    for (const tail of tails) delete tail.el.dataset.subscribed;
    lostAt = lostAt || new Date();
    if (details && details.reason === NOT_AUTHENTICATED) {
      // A refused token is forgotten: a reload tries without one.
      sessionStorage.removeItem(TOKEN);
      askForToken(token ? "the token was refused" : "this estrom needs a token");
      return true; // no retrying until a token is given
    }
    const retry = details && details.will_retry ? ` — reconnecting in ${details.retry_delay.toFixed(1)} s` : "";
    showConnection("lost", `connection lost${retry}`);
    return false; // keep retrying
  };
  connection = current;
  current.open();
}

function reconnect() {
  const previous = connection;
  connection = null; // its onclose must not count as a lost connection
  session = null;
  for (const tail of tails) delete tail.el.dataset.subscribed;
  try {
    if (previous) previous.close();
  } catch (error) {
    // already closed (refused, and not retrying)
  }
  connect();
}

function askForToken(reason) {
  showConnection("lost", "needs a token");
  document.getElementById("sign-in-reason").textContent = reason;
  document.getElementById("sign-in").hidden = false;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("token").focus();
}

document.getElementById("sign-in").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem(TOKEN, input.value.trim());
  input.value = "";
  document.getElementById("sign-in").hidden = true;
  showConnection("connecting", "connecting…");
  reconnect();
});

document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN);
  reconnect();
});

loadFromUrl();
connect();
