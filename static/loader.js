/*! consent-edge loader: Segment's analytics.js snippet with the visitor's
 * OneTrust consent already resolved at the edge. The Worker writes the data
 * block at the bottom per request; the rest is static/loader.js, minified. */
(function (edge) {
  "use strict";
  var w = window;
  var analytics = (w.analytics = w.analytics || []);
  if (analytics.initialize) return;
  if (analytics.invoked) {
    if (w.console && console.error) console.error("Segment snippet included twice.");
    return;
  }
  analytics.invoked = true;

  var EVENT_METHODS = ["track", "screen", "alias", "group", "page", "identify"];
  // The hold ends at the 101st call: page memory stays small, nothing is dropped.
  var MAX_HELD = 100;
  // Chromium's budget for keepalive bodies in flight is 64 KiB.
  var KEEPALIVE_BYTES = 60000;
  var own = Object.prototype.hasOwnProperty;

  function isObject(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v);
  }
  function isFunction(v) {
    return typeof v === "function";
  }

  // --- Consent: the edge's resolution, replaced when the banner changes it. ---
  var consent = edge.consent;
  var pending = null;
  // Undecided visitor, and a decision could enable something: keep events in
  // page memory until the banner answers (DESIGN.md, pre-consent hold).
  var holding = edge.hold > 0;
  var holdTimer = null;
  var watch = null;

  // --- Segment's snippet: a queue that analytics.js replays once loaded. ---
  // Event calls made before analytics.js has initialized are kept here, in
  // call order with the time of the call, and replayed in that order (the
  // snippet buffer would replay them grouped by method, timed at replay).
  var early = [];
  // The Analytics instance: `loaded` once our plugin loads, `instance` once
  // analytics.js has initialized and the early calls have gone in.
  var loaded = null;
  var instance = null;
  analytics.methods = [
    "trackSubmit", "trackClick", "trackLink", "trackForm", "pageview", "identify",
    "reset", "group", "track", "ready", "alias", "debug", "page", "screen", "once",
    "off", "on", "addSourceMiddleware", "addIntegrationMiddleware", "setAnonymousId",
    "addDestinationMiddleware", "register"
  ];
  analytics.factory = function (method) {
    return function () {
      var live = instance || (w.analytics.initialized && w.analytics);
      if (live) return live[method].apply(live, arguments);
      var args = Array.prototype.slice.call(arguments);
      if (EVENT_METHODS.indexOf(method) < 0) {
        args.unshift(method);
        analytics.push(args);
        return analytics;
      }
      early.push(call(method, args, Date.now()));
      if (holding && early.length > MAX_HELD) release("limit");
      return analytics;
    };
  };
  for (var i = 0; i < analytics.methods.length; i++) {
    analytics[analytics.methods[i]] = analytics.factory(analytics.methods[i]);
  }
  analytics.load = function (key, options) {
    var script = document.createElement("script");
    script.type = "text/javascript";
    script.async = true;
    script.setAttribute("data-global-segment-analytics-key", "analytics");
    script.src = scriptUrl(key);
    var first = document.getElementsByTagName("script")[0];
    first.parentNode.insertBefore(script, first);
    analytics._loadOptions = options;
  };
  analytics._writeKey = edge.writeKey;
  // analytics.js takes its CDN (settings, bundles, device-mode code) from here.
  analytics._cdn = edge.cdn;
  analytics.SNIPPET_VERSION = "5.2.1";

  function scriptUrl(key) {
    return edge.cdn + "/analytics.js/v1/" + encodeURIComponent(key) + "/analytics.min.js";
  }

  // One event call: its arguments as analytics.js resolves them (see its
  // arguments-resolver), rewritten in the one form that resolves the same way
  // with the call's time as `options.timestamp`; and the page as it was then.
  function call(method, args, at) {
    var page = document.querySelector("link[rel='canonical']");
    var record = {
      method: method,
      at: at,
      args: args,
      fields: null,
      page: {
        __t: "bpc",
        c: (page && page.getAttribute("href")) || undefined,
        p: location.pathname,
        u: location.href,
        s: location.search,
        t: document.title,
        r: document.referrer
      }
    };
    var f = resolve(method, args);
    if (f) {
      var options = {};
      for (var key in f.options) if (own.call(f.options, key)) options[key] = f.options[key];
      if (options.timestamp == null) options.timestamp = new Date(at);
      f.options = options;
      var lead = method === "track" ? [f.event, f.properties]
        : method === "page" || method === "screen" ? [f.category, f.name, f.properties]
        : method === "alias" ? [f.to, f.from]
        : [f.id, f.traits];
      record.args = lead.concat([options], f.callback ? [f.callback] : []);
      record.fields = f;
    }
    return record;
  }

  function resolve(method, a) {
    var callback = null;
    for (var i = 0; i < a.length; i++) if (isFunction(a[i])) { callback = a[i]; break; }
    var f = { callback: callback, options: {} };
    if (method === "track") {
      f.event = isObject(a[0]) ? a[0].event : a[0];
      if (!f.event || typeof f.event !== "string") return null;
      f.properties = isObject(a[0]) ? a[0].properties || {} : isObject(a[1]) ? a[1] : {};
      if (!isFunction(a[2])) f.options = a[2] || {};
      if (isObject(a[0]) && !isFunction(a[1])) f.options = a[1] || {};
    } else if (method === "page" || method === "screen") {
      var strings = a.slice(0, 5).filter(function (v) { return typeof v === "string"; });
      var objects = a.slice(0, 5).filter(isObject);
      f.category = strings.length === 2 && typeof a[0] === "string" ? a[0] : null;
      f.name = strings.length === 1 ? (typeof a[1] === "string" ? a[1] : strings[0])
        : strings.length === 2 && typeof a[1] === "string" ? a[1] : null;
      f.properties = objects.length === 2 ? objects[0]
        : objects.length === 1 && !isObject(a[3]) ? objects[0] : {};
      f.options = objects.length === 2 ? objects[1]
        : objects.length === 1 && !isObject(a[2]) && isObject(a[3]) ? a[3] : {};
    } else if (method === "alias") {
      var names = a.slice(0, 4).map(function (v) { return typeof v === "number" ? String(v) : v; })
        .filter(function (v) { return typeof v === "string"; });
      if (!names.length) return null;
      f.to = names[0];
      f.from = names.length > 1 ? names[1] : null;
      f.options = a.slice(0, 4).filter(isObject)[0] || {};
    } else {
      // identify, group: [id], [traits], [options], [callback]
      var slots = ["id", "traits", "options"];
      f.id = null;
      for (var j = 0, at = 0; j < a.length && at < slots.length; j++) {
        var v = a[j];
        if (isFunction(v)) break;
        if (slots[at] === "id") {
          at++;
          if (typeof v === "string" || typeof v === "number") { f.id = String(v); continue; }
          if (v === null || v === undefined) continue;
        }
        if (v === null || v === undefined || isObject(v)) f[slots[at]] = v;
        at++;
      }
      f.traits = f.traits || {};
      f.options = f.options || {};
    }
    return isObject(f.options) ? f : null;
  }

  // A stamped refusal is kept; a claim beyond the resolved consent is
  // corrected; a destination the edge does not know follows `All`.
  function stampIntegrations(stamped) {
    var granted = consent.integrations;
    var out = {};
    var key;
    for (key in stamped) {
      if (!own.call(stamped, key)) continue;
      var allowed = key === "Segment.io" ? consent.collection
        : own.call(granted, key) ? granted[key]
        : granted.All;
      out[key] = stamped[key] === false || !allowed ? false : stamped[key];
    }
    for (key in granted) {
      if (!own.call(out, key)) out[key] = granted[key];
    }
    return out;
  }

  function stampPreferences(stamped) {
    var out = {};
    var group;
    for (group in consent.groups) out[group] = consent.groups[group];
    for (group in stamped) {
      if (own.call(stamped, group)) {
        out[group] = stamped[group] !== false && consent.groups[group] === true;
      }
    }
    return out;
  }

  function onetrustString(preferences) {
    var parts = [];
    for (var group in preferences) parts.push(group + ":" + (preferences[group] ? "1" : "0"));
    return parts.join(",");
  }

  function stamp(ctx) {
    var event = ctx.event;
    if (edge.mode !== "context") {
      event.integrations = stampIntegrations(isObject(event.integrations) ? event.integrations : {});
    }
    if (edge.mode !== "integrations") {
      var context = (event.context = isObject(event.context) ? event.context : {});
      var stamped = isObject(context.consent) ? context.consent : {};
      var preferences = stampPreferences(isObject(stamped.categoryPreferences) ? stamped.categoryPreferences : {});
      stamped.categoryPreferences = preferences;
      stamped.onetrust = onetrustString(preferences);
      context.consent = stamped;
    }
    return ctx;
  }

  function stampWhenCurrent(ctx) {
    return pending ? pending.then(function () { return stamp(ctx); }) : stamp(ctx);
  }

  analytics.register({
    name: "consent-edge",
    type: "before",
    version: edge.version,
    isLoaded: function () { return true; },
    load: function (ctx, analyticsInstance) {
      // By now analytics.js has chosen the device-mode destinations from the
      // load options. It would also copy those load-time values into every
      // event, where they would read as the page's own choices and pin a
      // later grant to false; the stamp sets every destination instead.
      var live = analyticsInstance && analyticsInstance.integrations;
      if (isObject(live)) {
        for (var key in consent.integrations) if (key !== "Segment.io") delete live[key];
      }
      loaded = analyticsInstance;
      return Promise.resolve();
    },
    track: stampWhenCurrent,
    page: stampWhenCurrent,
    identify: stampWhenCurrent,
    group: stampWhenCurrent,
    alias: stampWhenCurrent,
    screen: stampWhenCurrent
  });

  // Initialized: the early calls go in, in the order they were made, before
  // any later call does.
  analytics.on("initialize", function () {
    instance = loaded;
    var calls = early.splice(0, early.length);
    for (var i = 0; i < calls.length; i++) replay(calls[i]);
  });

  function replay(record) {
    var live = instance || (w.analytics.initialized && w.analytics);
    if (!live) {
      early.push(record);
      return;
    }
    var result = live[record.method].apply(live, record.args.concat([record.page]));
    if (result && isFunction(result.catch)) result.catch(function () {});
  }

  // What the edge resolved from: re-resolve only when these cookies change.
  function consentCookies() {
    return document.cookie.split(";").filter(function (pair) {
      var name = pair.split("=")[0].trim();
      return name === "OptanonConsent" || name === "OptanonAlertBoxClosed";
    }).join(";");
  }
  var resolvedFrom = consentCookies();

  // Order-blind: a cookie lists its groups in its own order.
  function summary(c) {
    function sorted(o) {
      return Object.keys(o).sort().map(function (k) { return [k, o[k]]; });
    }
    return JSON.stringify([c.collection, sorted(c.integrations), sorted(c.groups)]);
  }

  function recheck() {
    var cookies = consentCookies();
    if (cookies === resolvedFrom) return;
    resolvedFrom = cookies;
    var before = summary(consent);
    var request = w.fetch(edge.consentUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("consent-edge: " + response.status);
        return response.json();
      })
      .then(function (next) {
        consent = { collection: next.collection, integrations: next.integrations, groups: next.groups };
        // A decision (or a consent a decision could no longer improve) ends the hold.
        if (!next.hold) release("decision");
        if (summary(consent) !== before) {
          w.analytics.track("Segment Consent Preference Updated", {}, {
            context: { consent: { categoryPreferences: stampPreferences({}) } }
          });
        }
      })
      .catch(function (error) {
        // Keep the consent we had; the edge enforces the cookie on every event anyway.
        resolvedFrom = null;
        if (w.console && console.warn) console.warn(error);
      })
      .then(function () {
        if (pending === request) pending = null;
      });
    pending = request;
  }

  // OneTrust's first word once its SDK is there: no banner will be shown for
  // this visitor.
  var heardOneTrust = false;
  function oneTrustSignal() {
    recheck();
    var sdk = w.OneTrust;
    if (heardOneTrust || !sdk) return;
    heardOneTrust = true;
    try {
      if ((isFunction(sdk.GetDomainData) && sdk.GetDomainData().ShowAlertNotice === false) ||
          (isFunction(sdk.IsAlertBoxClosed) && sdk.IsAlertBoxClosed() === true)) {
        release("no banner");
      }
    } catch (error) {
      // An SDK that cannot say keeps the hold to its other ends.
    }
  }

  w.addEventListener("OneTrustGroupsUpdated", oneTrustSignal);
  var wrapped = w.OptanonWrapper;
  w.OptanonWrapper = function () {
    try {
      if (isFunction(wrapped)) wrapped.apply(this, arguments);
    } finally {
      oneTrustSignal();
    }
  };

  // Device-mode destinations load (or not) by these; events go through the edge.
  function loadIntegrations() {
    var out = {};
    for (var key in consent.integrations) out[key] = consent.integrations[key];
    out["Segment.io"] = { apiHost: edge.apiHost, protocol: edge.protocol };
    return out;
  }

  function loadAnalytics() {
    analytics.load(edge.writeKey, { integrations: loadIntegrations() });
  }

  // --- The pre-consent hold. ---
  // Ends once, for the first reason; analytics.js then loads with the consent
  // current at that moment (after any re-resolution under way) and receives
  // the held calls.
  function release(reason) {
    if (!holding) return;
    holding = false;
    clearTimeout(holdTimer);
    clearInterval(watch);
    w.removeEventListener("pagehide", leaving);
    document.removeEventListener("visibilitychange", hidden);
    var held = early.length;
    (pending || Promise.resolve()).then(loadAnalytics);
    try {
      w.dispatchEvent(new CustomEvent("consent-edge:released", { detail: { reason: reason, held: held } }));
    } catch (error) {
      // Old browsers without CustomEvent: nothing listens there.
    }
  }

  // The page is hidden or left while holding: analytics.js will not load in
  // time, so the held events go to the edge now, as one keepalive batch that
  // outlives the page, with the consent as it stands (the edge enforces it).
  function leaving() {
    if (!holding) return;
    release("page hidden");
    var sendable = early.filter(function (record) { return record.fields; });
    early = early.filter(function (record) { return !record.fields; });
    if (sendable.length) send(sendable);
  }

  function hidden() {
    if (document.visibilityState === "hidden") leaving();
  }

  function cookieValue(name) {
    var pairs = document.cookie.split(";");
    for (var i = 0; i < pairs.length; i++) {
      var at = pairs[i].indexOf("=");
      if (pairs[i].slice(0, at).trim() !== name) continue;
      try {
        var value = decodeURIComponent(pairs[i].slice(at + 1).trim());
        return value.charAt(0) === '"' ? JSON.parse(value) : value;
      } catch (error) {
        return null;
      }
    }
    return null;
  }

  function uuid() {
    var c = w.crypto;
    if (c && isFunction(c.randomUUID)) return c.randomUUID();
    var b = c.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  // The Segment event analytics.js would have made of a held call.
  function segmentEvent(record, who) {
    var f = record.fields;
    var o = f.options;
    var context = {};
    var key;
    for (key in o) {
      if (own.call(o, key) && ["context", "integrations", "userId", "anonymousId", "timestamp", "messageId"].indexOf(key) < 0) {
        context[key] = o[key];
      }
    }
    if (isObject(o.context)) for (key in o.context) if (own.call(o.context, key)) context[key] = o.context[key];
    var p = record.page;
    var page = { path: p.p, referrer: p.r, search: p.s, title: p.t, url: p.c || p.u };
    if (!isObject(context.page)) context.page = page;
    context.userAgent = navigator.userAgent;
    context.locale = navigator.language;
    context.library = { name: "analytics.js", version: "consent-edge-" + edge.version };
    var time = new Date(o.timestamp);
    var event = {
      type: record.method,
      messageId: o.messageId || "ajs-next-" + record.at + "-" + uuid(),
      timestamp: (isNaN(time) ? new Date(record.at) : time).toISOString(),
      anonymousId: o.anonymousId || who.anonymousId,
      context: context,
      integrations: isObject(o.integrations) ? o.integrations : {}
    };
    if (record.method === "identify" && f.id) who.userId = f.id;
    var userId = o.userId || (record.method === "alias" ? f.to : who.userId);
    if (userId) event.userId = userId;
    if (record.method === "track") {
      event.event = f.event;
      event.properties = f.properties;
    } else if (record.method === "page" || record.method === "screen") {
      event.name = f.name;
      if (f.category) event.category = f.category;
      event.properties = { name: f.name || undefined, category: f.category || undefined };
      if (record.method === "page") for (key in page) event.properties[key] = page[key];
      for (key in f.properties) if (own.call(f.properties, key)) event.properties[key] = f.properties[key];
    } else if (record.method === "alias") {
      event.previousId = f.from || who.userId || who.anonymousId;
    } else {
      if (record.method === "group") event.groupId = f.id;
      event.traits = f.traits;
    }
    return stamp({ event: event }).event;
  }

  function send(records) {
    var who = { anonymousId: cookieValue("ajs_anonymous_id"), userId: cookieValue("ajs_user_id") };
    if (!who.anonymousId) {
      // Not stored by the loader: analytics.js adopts it when it loads.
      who.anonymousId = uuid();
      analytics.setAnonymousId(who.anonymousId);
    }
    var url = edge.protocol + "://" + edge.apiHost + "/b";
    var chunk = [];
    var bytes = 0;
    function flush() {
      if (!chunk.length) return;
      var batch = chunk;
      var body = JSON.stringify({ batch: batch.map(function (item) { return item.event; }), sentAt: new Date().toISOString(), writeKey: edge.writeKey });
      chunk = [];
      bytes = 0;
      w.fetch(url, { method: "POST", keepalive: true, credentials: "same-origin", headers: { "Content-Type": "text/plain" }, body: body })
        .then(function (response) {
          if (!response.ok) throw new Error("consent-edge: " + response.status);
        })
        .catch(function () {
          // Still here (the tab was only hidden): analytics.js, which retries,
          // sends them instead, under the same message ids.
          for (var i = 0; i < batch.length; i++) {
            batch[i].record.fields.options.messageId = batch[i].event.messageId;
            replay(batch[i].record);
          }
        });
    }
    for (var i = 0; i < records.length; i++) {
      var event = segmentEvent(records[i], who);
      var size = new TextEncoder().encode(JSON.stringify(event)).length;
      if (bytes + size > KEEPALIVE_BYTES) flush();
      chunk.push({ event: event, record: records[i] });
      bytes += size;
    }
    flush();
  }

  if (edge.page) analytics.page();
  if (holding) {
    holdTimer = setTimeout(function () { release("time limit"); }, edge.hold);
    // A page that redefines OptanonWrapper after this script hides OneTrust's
    // calls from it: while holding, also look for the SDK and the cookies.
    watch = setInterval(function () {
      if ((w.OneTrust && !heardOneTrust) || consentCookies() !== resolvedFrom) oneTrustSignal();
    }, 100);
    // An SDK already loaded has already made its first OptanonWrapper call.
    if (w.OneTrust) oneTrustSignal();
    w.addEventListener("pagehide", leaving);
    document.addEventListener("visibilitychange", hidden);
    // Fetched now, run when the hold ends.
    var preload = document.createElement("link");
    preload.rel = "preload";
    preload.as = "script";
    preload.href = scriptUrl(edge.writeKey);
    document.head.appendChild(preload);
  } else {
    loadAnalytics();
  }
})(EDGE_DATA);
