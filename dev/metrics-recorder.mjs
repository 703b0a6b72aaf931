// A recording stand-in for the Worker's Analytics Engine dataset
// (`CONSENT_METRICS`), bound through Miniflare's `wrappedBindings`: Miniflare's
// own local dataset accepts data points and discards them. It checks each
// point against Analytics Engine's limits, as the real binding does, and
// writes it as one log line (`POINT_PREFIX` + JSON) that the test reads from
// workerd's log stream (`startStack({ metrics: "record" })`). A log line is
// out before `writeDataPoint` returns; a subrequest to a recorder would be
// cancelled whenever the Worker answers first (a post whose events are all
// dropped answers at once).
//
// Inner binding `FAIL: true`: every call throws, as a broken binding would.

export const POINT_PREFIX = "consent-edge data point ";

const MAX_INDEX_BYTES = 96;
const MAX_FIELDS = 20;
const MAX_BLOB_BYTES = 16 * 1024;

const bytes = (s) => new TextEncoder().encode(s).length;

function check({ indexes = [], blobs = [], doubles = [] }) {
  if (indexes.length > 1) throw new TypeError("at most one index");
  if (indexes.some((i) => typeof i !== "string" || bytes(i) > MAX_INDEX_BYTES)) throw new TypeError(`an index is a string of at most ${MAX_INDEX_BYTES} bytes`);
  if (blobs.length > MAX_FIELDS || doubles.length > MAX_FIELDS) throw new TypeError(`at most ${MAX_FIELDS} blobs and ${MAX_FIELDS} doubles`);
  if (blobs.some((b) => typeof b !== "string")) throw new TypeError("blobs here are strings");
  if (blobs.reduce((sum, b) => sum + bytes(b), 0) > MAX_BLOB_BYTES) throw new TypeError(`blobs exceed ${MAX_BLOB_BYTES} bytes`);
  if (doubles.some((d) => typeof d !== "number" || !Number.isFinite(d))) throw new TypeError("doubles are finite numbers");
}

class RecordingDataset {
  constructor(env) {
    this.fail = env.FAIL === true;
  }

  writeDataPoint(point) {
    if (this.fail) throw new Error("Analytics Engine is unavailable (test stand-in)");
    check(point);
    console.log(POINT_PREFIX + JSON.stringify({ indexes: point.indexes, blobs: point.blobs, doubles: point.doubles }));
  }
}

export default function (env) {
  return new RecordingDataset(env);
}
