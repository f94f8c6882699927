// The page's reading of the engine's highlights (router/web/marks.js), in Node's test runner.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { pieces, marksOf } = require("../../router/web/marks.js");

test("a highlighted value is pieces of text, the engine's escapes undone", () => {
  assert.deepEqual(pieces("&lt;b&gt;<em>timeout</em>&lt;&#x2F;b&gt; &amp; &quot;x&quot; &#x27;y&#x27;"), [
    { text: "<b>", marked: false },
    { text: "timeout", marked: true },
    { text: '</b> & "x" \'y\'', marked: false },
  ]);
  assert.deepEqual(pieces("<em>a</em><em>b</em>"), [
    { text: "a", marked: true },
    { text: "b", marked: true },
  ]);
});

test("a value is marked only by a highlight of that very value", () => {
  const highlight = { msg: ["a <em>timeout</em>"], tags: ["<em>x</em>"] };
  assert.deepEqual(marksOf(highlight, "msg", "a timeout"), [
    { text: "a ", marked: false },
    { text: "timeout", marked: true },
  ]);
  assert.equal(marksOf(highlight, "msg", "another"), null);
  assert.equal(marksOf(highlight, "tags", "y"), null); // an array's other value
  assert.deepEqual(marksOf(highlight, "tags", "x"), [{ text: "x", marked: true }]);
  assert.equal(marksOf(undefined, "msg", "a timeout"), null);
  assert.equal(marksOf({ constructor: ["x"] }, "toString", "x"), null);
});
