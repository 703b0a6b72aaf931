// The customer's site in local runs: serves the pages in static/ and hands
// everything under the Worker's prefix to it, as a zone route would.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === env.PREFIX || url.pathname.startsWith(env.PREFIX + "/")) {
      return env.EDGE.fetch(request);
    }
    // What the fake Segment received, for the demo page.
    if (url.pathname === "/__segment/received") {
      return env.SEGMENT.fetch("http://fake-segment/__received");
    }
    if (url.pathname === "/favicon.ico") return new Response(null, { status: 204 });
    const page = env.PAGES[url.pathname === "/" ? "/demo.html" : url.pathname];
    if (page === undefined) return new Response("not found", { status: 404 });
    const type = url.pathname.endsWith(".js") ? "text/javascript" : "text/html";
    return new Response(page, { headers: { "content-type": `${type}; charset=utf-8`, "cache-control": "no-store" } });
  },
};
