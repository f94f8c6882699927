// The page's facets and refined queries (router/web/facets.js), in Node's own test runner.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Facets, refine, FACET_VALUES } = require("../../router/web/facets.js");

test("every field is counted, an array's values each once per document", () => {
  const facets = new Facets();
  facets.add({ service: "api", tags: ["a", "a", "b"], http: { status: 500 }, ms: 3 });
  facets.add({ service: "api", tags: ["b"], http: { status: 200 }, ms: 5, x: null });
  facets.add({ service: "db", ok: true });
  assert.equal(facets.total, 3);
  assert.deepEqual([...facets.fields.keys()], ["service", "tags", "http.status", "ms", "ok"]);
  const tags = facets.fields.get("tags");
  assert.equal(tags.count, 2);
  assert.deepEqual(facets.top(tags, 5), [["b", 2], ["a", 1]]);
  assert.deepEqual(facets.top(facets.fields.get("service"), 1), [["api", 2]]);
  const ms = facets.fields.get("ms");
  assert.deepEqual([ms.min, ms.max, ms.sum / ms.numbers], [3, 5, 4]);
  assert.deepEqual(facets.top(facets.fields.get("ok"), 5), [["true", 1]]);
});

test("past FACET_VALUES distinct values a field counts the rest together, exactly", () => {
  const facets = new Facets();
  for (let n = 0; n < FACET_VALUES + 10; n++) facets.add({ id: "v" + n });
  facets.add({ id: "v0" });
  const id = facets.fields.get("id");
  assert.equal(id.values.size, FACET_VALUES);
  assert.equal(id.others, 10);
  assert.ok(id.capped);
  assert.deepEqual(facets.top(id, 1), [["v0", 2]]);
});

test("a long value is counted by its first characters and cannot be filtered on", () => {
  const facets = new Facets();
  facets.add({ msg: "x".repeat(300) });
  const [[text, count]] = facets.top(facets.fields.get("msg"), 1);
  assert.equal(text.length, 256);
  assert.ok(text.endsWith("…"));
  assert.equal(count, 1);
  assert.ok(facets.fields.get("msg").cut.has(text));
});

test("the store's summary is counted first; a field it did not count is out of the live ones", () => {
  const facets = new Facets();
  facets.addStored({
    count: 10,
    top: { service: { values: [["api", 6], ["db", 3]], other: 0, missing: 1 } },
    stats: { ms: { count: 10, min: 1, max: 9, sum: 50 } },
  });
  facets.add({ service: "api", ms: 20, host: "h1" });
  const service = facets.fields.get("service");
  assert.deepEqual(facets.top(service, 2), [["api", 7], ["db", 3]]);
  assert.equal(service.count, 10);
  assert.equal(facets.outOf(service), 11);
  const ms = facets.fields.get("ms");
  assert.deepEqual([ms.min, ms.max, ms.sum / ms.numbers], [1, 20, 70 / 11]);
  assert.equal(facets.outOf(facets.fields.get("host")), 1);
});

test("filter for and out: a query string refined, its field and value escaped", () => {
  assert.equal(refine("level:error", "service", "api", false), '(level:error) AND service:"api"');
  assert.equal(refine("a OR b", "service", "api", true), '(a OR b) AND NOT service:"api"');
  assert.equal(refine("", "http.status", "500", false), 'http.status:"500"');
  assert.equal(refine("x", "we:ird (f)", 'a "b" \\c', false), '(x) AND we\\:ird\\ \\(f\\):"a \\"b\\" \\\\c"');
});

test("filter for and out: query DSL in a bool", () => {
  const query = { term: { level: "error" } };
  assert.deepEqual(refine(query, "service", "api", false), {
    bool: { must: [query], filter: [{ match_phrase: { service: "api" } }] },
  });
  assert.deepEqual(refine(query, "service", "api", true), {
    bool: { must: [query], must_not: [{ match_phrase: { service: "api" } }] },
  });
});
