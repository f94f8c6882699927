// A tail's live field facets (every field seen, its top values, numbers' min/avg/max), and the
// queries that "filter for" and "filter out" make. Loaded by the page before estrom.js; Node's
// tests load it as a CommonJS module.
"use strict";

// Distinct values counted per field: past it, a new value is counted among the others (the
// counts shown stay exact; a value first seen then is not listed).
const FACET_VALUES = 5000;
const FACET_FIELDS = 500; // fields counted per tail: past it, new fields are not listed
const VALUE_CHARS = 256; // a longer value is counted by its first 255 characters and "…"
const FACET_DEPTH = 20; // objects deeper than this are not walked

// A value as the facets count it: text, as estrom.summary gives it (a number or boolean as JSON
// writes it). Null for what is not a single value.
function valueText(value) {
  if (typeof value === "string") return value.length > VALUE_CHARS ? value.slice(0, VALUE_CHARS - 1) + "…" : value;
  if (typeof value === "number") return Number.isFinite(value) ? JSON.stringify(value) : null;
  if (typeof value === "boolean") return value ? "true" : "false";
  return null;
}

// Every single value of a document by its dotted field name; an array's values each once.
function collect(value, name, into, depth) {
  if (value === null || value === undefined) return;
  if (Array.isArray(value)) {
    if (depth < FACET_DEPTH) for (const item of value) collect(item, name, into, depth + 1);
    return;
  }
  if (typeof value === "object") {
    if (depth < FACET_DEPTH) {
      for (const [key, inner] of Object.entries(value)) collect(inner, name ? name + "." + key : key, into, depth + 1);
    }
    return;
  }
  if (!name) return;
  const text = valueText(value);
  if (text === null) return;
  let values = into.get(name);
  if (!values) into.set(name, (values = new Map()));
  values.set(text, value);
}

class Facets {
  constructor() {
    this.clear(new Date());
  }

  clear(since) {
    this.since = since; // what the counts cover: from then on
    this.total = 0; // documents counted
    this.stored = 0; // of them, counted by the store's summary
    this.fields = new Map(); // name -> field, in the order first seen
    this.fieldsCapped = false;
  }

  field(name) {
    let field = this.fields.get(name);
    if (!field) {
      if (this.fields.size >= FACET_FIELDS) {
        this.fieldsCapped = true;
        return null;
      }
      field = {
        name,
        count: 0, // documents with it
        values: new Map(), // text -> documents with that value
        others: 0, // documents counted by values not listed (FACET_VALUES, or the store's `other`)
        capped: false,
        cut: new Set(), // texts made shorter than the value: no filter on them
        numbers: 0, // values that are numbers
        min: Infinity,
        max: -Infinity,
        sum: 0,
        fromStore: false, // counted by the summary too; otherwise only since the tail opened
      };
      this.fields.set(name, field);
    }
    return field;
  }

  add(source) {
    this.total += 1;
    const seen = new Map();
    collect(source, "", seen, 0);
    for (const [name, values] of seen) {
      const field = this.field(name);
      if (!field) continue;
      field.count += 1;
      for (const [text, value] of values) {
        if (typeof value === "number") {
          field.numbers += 1;
          field.sum += value;
          if (value < field.min) field.min = value;
          if (value > field.max) field.max = value;
        }
        if (typeof value === "string" && value.length > VALUE_CHARS) field.cut.add(text);
        const count = field.values.get(text);
        if (count !== undefined) field.values.set(text, count + 1);
        else if (field.values.size < FACET_VALUES) field.values.set(text, 1);
        else {
          field.others += 1;
          field.capped = true;
        }
      }
    }
  }

  // What estrom.summary counted in the store ({count, top, stats}), before the live hits.
  addStored(summary) {
    this.total += summary.count;
    this.stored += summary.count;
    for (const [name, top] of Object.entries(summary.top || {})) {
      const field = this.field(name);
      if (!field) continue;
      field.fromStore = true;
      field.count += summary.count - top.missing;
      for (const [text, count] of top.values) field.values.set(text, (field.values.get(text) || 0) + count);
      field.others += top.other;
    }
    for (const [name, stats] of Object.entries(summary.stats || {})) {
      const field = this.field(name);
      if (!field || !stats.count) continue;
      field.numbers += stats.count;
      field.sum += stats.sum;
      field.min = Math.min(field.min, stats.min);
      field.max = Math.max(field.max, stats.max);
    }
  }

  // The documents a field's counts are out of: all, or those since the tail opened when the
  // store's summary did not count the field.
  outOf(field) {
    return field.fromStore ? this.total : this.total - this.stored;
  }

  // The `k` most counted values, [text, count], ties by text.
  top(field, k) {
    return [...field.values]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .slice(0, k);
  }
}

// Lucene's classic query syntax: a field name with its special characters escaped, and a value
// as a quoted phrase (on a keyword or a number, the value itself; on analysed text, the phrase).
const LUCENE_SPECIAL = /[+\-=&|><!(){}[\]^"~*?:\\/\s]/g;

function luceneField(name) {
  return name.replace(LUCENE_SPECIAL, "\\$&");
}

function lucenePhrase(text) {
  return '"' + text.replace(/[\\"]/g, "\\$&") + '"';
}

// The query that keeps (or leaves out) the documents whose `field` holds `text`: for a query
// string, `(<query>) AND field:"text"` / `AND NOT`; for query DSL, its `bool` with a
// `match_phrase` (as Kibana's filters are) in `filter` or `must_not`.
function refine(query, field, text, negate) {
  if (query !== null && typeof query === "object") {
    const clause = { match_phrase: { [field]: text } };
    return { bool: { must: [query], [negate ? "must_not" : "filter"]: [clause] } };
  }
  const term = luceneField(field) + ":" + lucenePhrase(text);
  const condition = negate ? "NOT " + term : term;
  return query.trim() ? `(${query}) AND ${condition}` : condition;
}

if (typeof module !== "undefined") {
  module.exports = { Facets, refine, luceneField, lucenePhrase, valueText, FACET_VALUES, VALUE_CHARS };
}
