// Follows the fleet page or a host page live. The server sends `changed` events over
// server-sent events, at most one a second, naming what changed; nothing is re-rendered for
// the event itself. The fleet page fetches only what changed: the cards, the rows of changed
// hosts that it shows, and the tables of runs, schedules or repos; the host page fetches
// itself. Without this script every page is complete, only not live.
(function () {
"use strict";
var main = document.querySelector("main[data-live]");
if (!main || !window.EventSource || !window.fetch || !window.DOMParser) return;
var url = main.getAttribute("data-live");
var fleet = !!document.getElementById("hosts-table");
var pending = null, busy = false, opened = false, lost = false;

function get(path) {
  return fetch(path, { credentials: "same-origin" }).then(function (r) {
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.text();
  });
}
function parse(html) { return new DOMParser().parseFromString(html, "text/html"); }
function indicate(text) {
  var live = document.getElementById("live");
  if (live) { live.hidden = false; live.textContent = text; }
}
// Replaces the element with this id by the one in `doc`.
function place(id, doc) {
  var fresh = doc.getElementById(id), old = document.getElementById(id);
  if (fresh && old) old.replaceWith(document.importNode(fresh, true));
}
// The whole page again: after a reconnect, or when too much changed to patch.
function reload() {
  return get(location.pathname + location.search).then(function (html) {
    var fresh = parse(html).querySelector("main");
    var now = document.querySelector("main");
    if (fresh && now) now.replaceWith(document.importNode(fresh, true));
    indicate("Live");
  });
}
function row(namespace, name) {
  var href = "/hosts/" + namespace + "/" + name;
  var rows = document.querySelectorAll("#hosts-table tr[data-host]");
  for (var i = 0; i < rows.length; i++) {
    var link = rows[i].querySelector("a");
    if (rows[i].getAttribute("data-host") === name && link && link.getAttribute("href") === href) {
      return rows[i];
    }
  }
  return null;
}
function patchRow(namespace, name) {
  if (!row(namespace, name)) return null;
  return get("/hosts/" + namespace + "/" + name + "/row").then(function (html) {
    var fresh = parse("<table><tbody>" + html + "</tbody></table>").querySelector("tr");
    var now = row(namespace, name);
    if (fresh && now) now.replaceWith(document.importNode(fresh, true));
  });
}
function fragment(part, query) {
  return get("/fragments/" + part + query).then(function (html) { place(part, parse(html)); });
}
function apply(d) {
  if (!fleet || d.reset || d.more || d.revisions) return reload();
  var show = new URLSearchParams(location.search).get("show");
  var jobs = [fragment("summary", show ? "?show=" + encodeURIComponent(show) : "")];
  ["running", "schedules", "repos"].forEach(function (part) {
    if (d[part]) jobs.push(fragment(part, ""));
  });
  d.hosts.forEach(function (h) {
    var job = patchRow(h[0], h[1]);
    if (job) jobs.push(job);
  });
  return Promise.all(jobs);
}
function merge(a, b) {
  var out = { hosts: a.hosts.concat(b.hosts) };
  ["more", "running", "schedules", "repos", "revisions", "reset"].forEach(function (k) {
    out[k] = !!(a[k] || b[k]);
  });
  return out;
}
// One update at a time; what arrives meanwhile is merged and applied next.
function next() {
  if (busy || !pending) return;
  var d = pending;
  pending = null;
  busy = true;
  apply(d).catch(function () { indicate("Live (an update failed; reload to be sure)"); })
    .then(function () { busy = false; next(); });
}
function queue(d) {
  pending = pending ? merge(pending, d) : d;
  next();
}
var source = null;
function connect() {
  source = new EventSource(url);
  source.addEventListener("open", function () {
    indicate("Live");
    // Events sent while the connection was down are lost: catch up.
    if (opened && lost) queue({ hosts: [], reset: true });
    opened = true;
    lost = false;
  });
  source.addEventListener("error", function () {
    lost = true;
    indicate("Reconnecting\u2026");
  });
  source.addEventListener("changed", function (e) {
    var d;
    try { d = JSON.parse(e.data); } catch (err) { return; }
    if (d && d.hosts) queue(d);
  });
}
// A page left for another closes its connection, so that pages kept for the back button do
// not hold the browser's few connections to the controller; one shown again catches up.
window.addEventListener("pagehide", function () {
  if (source) source.close();
  lost = true;
});
window.addEventListener("pageshow", function (e) {
  if (e.persisted) connect();
});
connect();
})();
