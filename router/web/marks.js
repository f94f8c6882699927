// The engine's highlights of a hit (its "highlight": {field: [whole value, HTML-escaped, matched
// terms in <em>]}) as pieces of text, each marked or not: drawn with textContent, never as HTML.
// Loaded by the page before estrom.js; Node's tests load it as a CommonJS module.
"use strict";

const ENTITIES = { "&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&#x27;": "'", "&#x2F;": "/", "&#39;": "'" };

function unescapeHtml(text) {
  return text.replace(/&(?:lt|gt|amp|quot|#x27|#x2F|#39);/g, (entity) => ENTITIES[entity]);
}

// One highlighted value: [{text, marked}], in order. What is outside the engine's tags is the
// document's own text (escaped by the engine, unescaped here).
function pieces(fragment) {
  const out = [];
  let marked = false;
  for (const part of fragment.split(/(<em>|<\/em>)/)) {
    if (part === "<em>") marked = true;
    else if (part === "</em>") marked = false;
    else if (part) out.push({ text: unescapeHtml(part), marked });
  }
  return out;
}

// The pieces of `value` (a field's string value) if one of the field's highlights is of it,
// else null: the engine gives whole values, one per value of an array that it highlighted.
function marksOf(highlight, field, value) {
  const fragments = highlight && Object.prototype.hasOwnProperty.call(highlight, field) ? highlight[field] : null;
  if (!Array.isArray(fragments) || typeof value !== "string") return null;
  for (const fragment of fragments) {
    if (typeof fragment !== "string") continue;
    const found = pieces(fragment);
    if (found.map((piece) => piece.text).join("") === value) return found;
  }
  return null;
}

if (typeof module !== "undefined") module.exports = { pieces, marksOf, unescapeHtml };
