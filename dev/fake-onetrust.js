// A stand-in for OneTrust's banner SDK, for the demo and the browser tests:
// the parts consent-edge's loader relies on, behaving as OneTrust's do.
// - `window.OneTrust` with `GetDomainData().ShowAlertNotice`, `IsAlertBoxClosed()`,
//   `AllowAll()`, `RejectAll()` and `UpdateConsent(groups)` (a custom choice);
// - on load (after `sdkDelay` ms, as the real SDK loads asynchronously) it writes
//   `OptanonConsent` for a new visitor (interactionCount=0), shows its banner
//   unless told not to, fires `OneTrustGroupsUpdated` and calls `OptanonWrapper()`;
// - a choice writes `OptanonConsent` (interactionCount + 1) and
//   `OptanonAlertBoxClosed` (an ISO time), then fires the same two signals.
// The page's query string configures it: `banner=0` (no banner for this
// visitor, e.g. outside the consent region; every group then stands granted),
// `sdkDelay=MS` (default 50), `groupsEvent=0` (no `OneTrustGroupsUpdated`,
// only `OptanonWrapper()`).
(function () {
  "use strict";
  var GROUPS = ["C0001", "C0002", "C0003", "C0004", "C0005"];
  var params = new URLSearchParams(location.search);
  var showBanner = params.get("banner") !== "0";
  var sdkDelay = Number(params.get("sdkDelay") || 50);
  var groupsEvent = params.get("groupsEvent") !== "0";

  function cookie(name) {
    var found = document.cookie.split(";").map(function (p) { return p.trim(); })
      .filter(function (p) { return p.indexOf(name + "=") === 0; })[0];
    return found ? found.slice(name.length + 1) : null;
  }

  function consentFields() {
    var fields = {};
    (cookie("OptanonConsent") || "").split("&").forEach(function (pair) {
      var at = pair.indexOf("=");
      if (at > 0) fields[pair.slice(0, at)] = decodeURIComponent(pair.slice(at + 1).replace(/\+/g, " "));
    });
    return fields;
  }

  function setCookie(name, value) {
    var expires = new Date(Date.now() + 365 * 864e5).toUTCString();
    document.cookie = name + "=" + value + "; path=/; expires=" + expires + "; SameSite=Lax";
  }

  function writeConsent(granted, interactionCount) {
    var old = consentFields();
    var fields = {
      isGpcEnabled: "0", datestamp: new Date().toString(), version: "202409.1.0", browserGpcFlag: "0",
      isIABGlobal: "false", hosts: "", consentId: old.consentId || crypto.randomUUID(),
      interactionCount: String(interactionCount), isAnonUser: "1",
      landingPath: interactionCount ? "NotLandingPage" : location.href,
      groups: GROUPS.map(function (g) { return g + ":" + (granted(g) ? "1" : "0"); }).join(","),
      geolocation: showBanner ? "DE;BE" : "US;CA", AwaitingReconsent: "false"
    };
    setCookie("OptanonConsent", Object.keys(fields).map(function (k) {
      return k + "=" + encodeURIComponent(fields[k]).replace(/%20/g, "+");
    }).join("&"));
  }

  function announce() {
    if (groupsEvent) window.dispatchEvent(new Event("OneTrustGroupsUpdated"));
    if (typeof window.OptanonWrapper === "function") window.OptanonWrapper();
  }

  function choose(granted) {
    writeConsent(granted, Number(consentFields().interactionCount || 0) + 1);
    setCookie("OptanonAlertBoxClosed", new Date().toISOString());
    hideBanner();
    announce();
  }

  var banner = null;
  function showBannerElement() {
    banner = document.createElement("div");
    banner.id = "onetrust-banner-sdk";
    banner.setAttribute("role", "dialog");
    banner.style.cssText = "position:fixed;left:0;right:0;bottom:0;z-index:10;background:#fff;border-top:3px solid #1f6feb;" +
      "box-shadow:0 -4px 16px rgba(0,0,0,.12);padding:14px 20px;font:14px/1.4 system-ui,sans-serif;display:flex;gap:16px;align-items:center";
    banner.innerHTML = '<div style="flex:1"><b>We value your privacy</b><br>We use cookies for analytics and advertising. ' +
      'Choose “Accept All Cookies” or “Reject All”.</div>' +
      '<button id="onetrust-reject-all-handler" style="font:inherit;padding:6px 12px">Reject All</button>' +
      '<button id="onetrust-accept-btn-handler" style="font:inherit;padding:6px 12px;background:#1f6feb;color:#fff;border:0;border-radius:4px">Accept All Cookies</button>';
    document.body.appendChild(banner);
    document.getElementById("onetrust-accept-btn-handler").onclick = function () { window.OneTrust.AllowAll(); };
    document.getElementById("onetrust-reject-all-handler").onclick = function () { window.OneTrust.RejectAll(); };
  }
  function hideBanner() {
    if (banner) banner.remove();
    banner = null;
  }

  function isAlertBoxClosed() {
    return !!cookie("OptanonAlertBoxClosed");
  }

  function start() {
    window.OneTrust = {
      GetDomainData: function () { return { ShowAlertNotice: showBanner, Groups: GROUPS.map(function (g) { return { CustomGroupId: g }; }) }; },
      IsAlertBoxClosed: isAlertBoxClosed,
      AllowAll: function () { choose(function () { return true; }); },
      RejectAll: function () { choose(function (g) { return g === "C0001"; }); },
      UpdateConsent: function (groups) { choose(function (g) { return g === "C0001" || groups.indexOf(g) >= 0; }); }
    };
    if (!cookie("OptanonConsent")) {
      // As OneTrust does on a first visit: the defaults, before any choice.
      writeConsent(function (g) { return g === "C0001" || !showBanner; }, 0);
    }
    if (showBanner && !isAlertBoxClosed()) {
      if (document.body) showBannerElement();
      else document.addEventListener("DOMContentLoaded", showBannerElement);
    }
    announce();
  }

  setTimeout(start, sdkDelay);
})();
