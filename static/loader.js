/*! consent-edge loader: Segment's analytics.js snippet with the visitor's
 * OneTrust consent already resolved at the edge. The object at the bottom is
 * written per request by the Worker; everything else is this file as is. */
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

  // --- Segment's snippet: a queue that analytics.js replays once loaded. ---
  var EVENT_METHODS = ["track", "screen", "alias", "group", "page", "identify"];
  analytics.methods = [
    "trackSubmit", "trackClick", "trackLink", "trackForm", "pageview", "identify",
    "reset", "group", "track", "ready", "alias", "debug", "page", "screen", "once",
    "off", "on", "addSourceMiddleware", "addIntegrationMiddleware", "setAnonymousId",
    "addDestinationMiddleware", "register"
  ];
  analytics.factory = function (method) {
    return function () {
      if (w.analytics.initialized) return w.analytics[method].apply(w.analytics, arguments);
      var args = Array.prototype.slice.call(arguments);
      if (EVENT_METHODS.indexOf(method) > -1) {
        // The page as it was when the call was made ("buffered page context").
        var canonical = document.querySelector("link[rel='canonical']");
        args.push({
          __t: "bpc",
          c: (canonical && canonical.getAttribute("href")) || undefined,
          p: location.pathname,
          u: location.href,
          s: location.search,
          t: document.title,
          r: document.referrer
        });
      }
      args.unshift(method);
      analytics.push(args);
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
    script.src = edge.cdn + "/analytics.js/v1/" + encodeURIComponent(key) + "/analytics.min.js";
    var first = document.getElementsByTagName("script")[0];
    first.parentNode.insertBefore(script, first);
    analytics._loadOptions = options;
  };
  analytics._writeKey = edge.writeKey;
  // analytics.js takes its CDN (settings, bundles, device-mode code) from here.
  analytics._cdn = edge.cdn;
  analytics.SNIPPET_VERSION = "5.2.1";

  // --- Consent: stamped on every event, refreshed when the banner changes it. ---
  var consent = edge.consent;
  var pending = null;

  function isObject(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v);
  }

  // A stamped refusal is kept; a claim beyond the resolved consent is
  // corrected; a destination the edge does not know follows `All`.
  function stampIntegrations(stamped) {
    var granted = consent.integrations;
    var out = {};
    var key;
    for (key in stamped) {
      if (!Object.prototype.hasOwnProperty.call(stamped, key)) continue;
      var allowed = key === "Segment.io" ? consent.collection
        : Object.prototype.hasOwnProperty.call(granted, key) ? granted[key]
        : granted.All;
      out[key] = stamped[key] === false || !allowed ? false : stamped[key];
    }
    for (key in granted) {
      if (!Object.prototype.hasOwnProperty.call(out, key)) out[key] = granted[key];
    }
    return out;
  }

  function stampPreferences(stamped) {
    var out = {};
    var group;
    for (group in consent.groups) out[group] = consent.groups[group];
    for (group in stamped) {
      if (Object.prototype.hasOwnProperty.call(stamped, group)) {
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
    load: function (ctx, instance) {
      // By now analytics.js has chosen the device-mode destinations from the
      // load options. It would also copy those load-time values into every
      // event, where they would read as the page's own choices and pin a
      // later grant to false; the stamp sets every destination instead.
      var live = instance && instance.integrations;
      if (isObject(live)) {
        for (var key in consent.integrations) if (key !== "Segment.io") delete live[key];
      }
      return Promise.resolve();
    },
    track: stampWhenCurrent,
    page: stampWhenCurrent,
    identify: stampWhenCurrent,
    group: stampWhenCurrent,
    alias: stampWhenCurrent,
    screen: stampWhenCurrent
  });

  // What the edge resolved from: re-resolve only when these cookies change.
  function consentCookies() {
    return document.cookie.split(";").filter(function (pair) {
      var name = pair.split("=")[0].trim();
      return name === "OptanonConsent" || name === "OptanonAlertBoxClosed";
    }).join(";");
  }
  var resolvedFrom = consentCookies();

  function summary(c) {
    return JSON.stringify([c.collection, c.integrations, c.groups]);
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

  w.addEventListener("OneTrustGroupsUpdated", recheck);
  var wrapped = w.OptanonWrapper;
  w.OptanonWrapper = function () {
    try {
      if (typeof wrapped === "function") wrapped.apply(this, arguments);
    } finally {
      recheck();
    }
  };

  // Device-mode destinations load (or not) by these; events go through the edge.
  var loadIntegrations = {};
  for (var key in consent.integrations) loadIntegrations[key] = consent.integrations[key];
  loadIntegrations["Segment.io"] = { apiHost: edge.apiHost, protocol: edge.protocol };
  analytics.load(edge.writeKey, { integrations: loadIntegrations });
  if (edge.page) analytics.page();
})(/*EDGE*/ null);
