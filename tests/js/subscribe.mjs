// A WAMP client that no one here wrote: autobahn-js in Node.js subscribes to docs-for-<ID>.
// Usage: node --experimental-websocket subscribe.mjs ROUTER_URL ID COUNT
// Prints "subscribed" once the router has confirmed the subscription, then each hit as one JSON
// line; exits 0 after COUNT hits.
import autobahn from "autobahn";

const [url, id, count] = process.argv.slice(2);
const connection = new autobahn.Connection({ url, realm: "estrom", max_retries: 0 });
let received = 0;

connection.onopen = async (session) => {
  await session.subscribe(`docs-for-${id}`, (hits) => {
    for (const hit of hits) {
      console.log(JSON.stringify(hit));
      received += 1;
    }
    if (received >= Number(count)) connection.close();
  });
  console.log("subscribed");
};

connection.onclose = (reason) => {
  if (received < Number(count)) console.error(`closed (${reason}) after ${received} hits`);
  process.exit(received >= Number(count) ? 0 : 1);
};

connection.open();
