// A KV binding that records what the Worker does with it, for the tests that
// count KV operations (`startStack({ kvOps: true })`): a wrapped binding in
// front of the real namespace (INNER) that notes every get, put and delete as
// one key `op|key|uuid` in another namespace (OPS), so concurrent calls never
// lose a count. Everything else passes through unchanged.
export default function (env) {
  const kv = env.INNER;
  const note = (op, key) => env.OPS.put(`${op}|${key}|${crypto.randomUUID()}`, "");
  return {
    async get(key, ...rest) {
      await note("get", key);
      return kv.get(key, ...rest);
    },
    async getWithMetadata(key, ...rest) {
      await note("get", key);
      return kv.getWithMetadata(key, ...rest);
    },
    list: (...args) => kv.list(...args),
    async put(key, ...rest) {
      await note("put", key);
      return kv.put(key, ...rest);
    },
    async delete(key) {
      await note("delete", key);
      return kv.delete(key);
    },
  };
}
