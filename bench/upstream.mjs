// Segment's tracking API, as fast as a Worker can answer: the shared upstream
// of every Worker under test, in the same workerd.
export default {
  async fetch(request) {
    await request.arrayBuffer();
    return new Response('{"success":true}', { headers: { "content-type": "application/json" } });
  },
};
