/* PipelineJobs operator console: the live parts of its pages.
 *
 * Plain JavaScript, no build step, no dependency. Each page says what it wants kept
 * live with data- attributes; this file polls the console's small JSON endpoints
 * (short requests, every ~2 s, paused while the tab is hidden) and swaps in the page
 * fragments the server rendered — the same escaped templates as the page itself.
 * Log text is added as text nodes, never as markup.
 */
(function () {
  "use strict";

  /* How often to ask (ms): the server says (gateway.console_poll), 2 s by default. */
  var INTERVAL = parseInt(document.body && document.body.getAttribute("data-poll"), 10) || 2000;
  var SLOW = Math.round(INTERVAL * 2.5);

  function setStatus(kind, text) {
    var box = document.getElementById("live-status");
    if (!box) { return; }
    var dot = box.querySelector(".live-dot");
    var label = box.querySelector(".live-text");
    dot.className = "live-dot " + kind;
    label.textContent = text;
  }

  function SignedOut() {}

  function check(response) {
    if (response.status === 401) { throw new SignedOut(); }
    if (!response.ok && response.status !== 404) {
      throw new Error("HTTP " + response.status);
    }
    return response;
  }

  function getJSON(url) {
    return fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(check)
      .then(function (r) { return r.json(); });
  }

  /* Run step() every interval ms while the page is visible; step returns a promise
   * resolving to false to stop. */
  function poll(step, interval) {
    var timer = null;
    var stopped = false;
    function schedule() {
      if (stopped) { return; }
      timer = window.setTimeout(run, interval);
    }
    function run() {
      timer = null;
      if (document.hidden) { return; }  // resumed by visibilitychange
      step().then(function (more) {
        setStatus("on", "live");
        if (more === false) { stopped = true; return; }
        schedule();
      }, function (error) {
        if (error instanceof SignedOut) {
          stopped = true;
          setStatus("off", "signed out — reload to sign in");
          return;
        }
        setStatus("off", "cannot reach the server; retrying");
        schedule();
      });
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer === null && !stopped) { run(); }
    });
    schedule();
    setStatus("on", "live");
  }

  function fragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html;
    return template.content;
  }

  function detailsKey(details) {
    var holder = details.closest("[data-seq], [data-uuid], tr, li");
    var summary = details.querySelector("summary");
    var where = holder ? (holder.getAttribute("data-seq") || holder.getAttribute("data-uuid") ||
                          (holder.firstElementChild ? holder.firstElementChild.textContent : "")) : "";
    return where + "|" + (summary ? summary.textContent.replace(/\d+/g, "") : "");
  }

  /* Replace the children of el with html, keeping open what the reader opened. */
  function swap(el, html) {
    var open = {};
    Array.prototype.forEach.call(el.querySelectorAll("details[open]"), function (d) {
      open[detailsKey(d)] = true;
    });
    el.replaceChildren(fragment(html));
    Array.prototype.forEach.call(el.querySelectorAll("details"), function (d) {
      if (open[detailsKey(d)]) { d.open = true; }
    });
  }

  function withParam(url, name, value) {
    return url + (url.indexOf("?") < 0 ? "?" : "&") + name + "=" + encodeURIComponent(value);
  }

  function flash(row) {
    row.classList.add("fresh");
    window.setTimeout(function () { row.classList.remove("fresh"); }, 4000);
  }

  /* -- a job's page ------------------------------------------------------------- */

  function followJob(root) {
    poll(function () {
      var url = withParam(root.getAttribute("data-live-job"), "fp", root.getAttribute("data-fingerprint"));
      return getJSON(url).then(function (data) {
        if (!data.changed) { return true; }
        root.setAttribute("data-fingerprint", data.fingerprint);
        root.setAttribute("data-running", data.running ? "yes" : "no");
        Object.keys(data.parts).forEach(function (name) {
          var el = root.querySelector('[data-part="' + name + '"]');
          if (el) { swap(el, data.parts[name]); }
        });
        return true;
      });
    }, INTERVAL);
  }

  function followLog(root, pre) {
    var offset = parseInt(pre.getAttribute("data-offset") || "0", 10);
    var decoder = new TextDecoder("utf-8");
    var quiet = 0;
    var status = document.getElementById("log-status");
    poll(function () {
      var url = withParam(pre.getAttribute("data-log"), "offset", offset);
      return fetch(url, {credentials: "same-origin"}).then(check).then(function (r) {
        if (r.status === 404) { return null; }  // no log yet: the job has not started
        var next = parseInt(r.headers.get("X-Log-Next-Offset") || String(offset), 10);
        return r.arrayBuffer().then(function (buffer) { offset = next; return buffer; });
      }).then(function (buffer) {
        var text = buffer ? decoder.decode(buffer, {stream: true}) : "";
        if (text) {
          var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.appendChild(document.createTextNode(text));
          if (atEnd) { pre.scrollTop = pre.scrollHeight; }
          quiet = 0;
        } else {
          quiet += 1;
        }
        var running = root.getAttribute("data-running") === "yes";
        if (status) {
          status.textContent = running ? "following while it runs" : "the job is not running";
        }
        // Keep following while the job runs, and a little after, for the last lines.
        return running || quiet < 3;
      });
    }, INTERVAL);
  }

  /* -- the jobs list ------------------------------------------------------------ */

  function followJobs(table) {
    var body = table.tBodies[0];
    var since = table.getAttribute("data-since");
    var prepend = table.getAttribute("data-prepend") === "yes";
    var elsewhere = 0;
    var note = document.getElementById("jobs-live-note");
    poll(function () {
      return getJSON(withParam(table.getAttribute("data-live-jobs"), "since", since)).then(function (data) {
        since = data.since;
        data.rows.forEach(function (row) {
          var existing = body.querySelector('tr[data-uuid="' + CSS.escape(row.uuid) + '"]');
          var made = fragment(row.html).firstElementChild;
          if (!made) { return; }
          if (existing) {
            if (existing.getAttribute("data-version") === String(row.version)) { return; }
            existing.replaceWith(made);
            if (prepend && table.getAttribute("data-live-jobs").indexOf("sort=changed") >= 0) {
              body.insertBefore(made, body.firstChild);
            }
            flash(made);
          } else if (prepend) {
            var empty = body.querySelector("tr.empty");
            if (empty) { empty.remove(); }
            body.insertBefore(made, body.firstChild);
            flash(made);
          } else {
            elsewhere += 1;
          }
        });
        if (elsewhere && note) {
          note.textContent = elsewhere + " job(s) changed that are not on this page — reload to see them";
        }
        return true;
      });
    }, INTERVAL);
  }

  /* -- the overview ------------------------------------------------------------- */

  function followOverview(root) {
    poll(function () {
      return getJSON(root.getAttribute("data-live-overview")).then(function (data) {
        Object.keys(data.parts).forEach(function (name) {
          var el = root.querySelector('[data-part="' + name + '"]');
          if (el) { swap(el, data.parts[name]); }
        });
        return true;
      });
    }, SLOW);
  }

  /* -- a bulk action's page (followed while it is SENDING or RUNNING) ------------ */

  function followBulk(root) {
    poll(function () {
      return getJSON(root.getAttribute("data-live-bulk")).then(function (data) {
        root.setAttribute("data-status", data.status);
        Object.keys(data.parts).forEach(function (name) {
          var el = root.querySelector('[data-part="' + name + '"]');
          if (el) { swap(el, data.parts[name]); }
        });
        return data.live;
      });
    }, INTERVAL);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var job = document.getElementById("job");
    if (job && job.getAttribute("data-live-job")) {
      followJob(job);
      var pre = document.getElementById("job-log");
      if (pre) { followLog(job, pre); }
    }
    var table = document.getElementById("jobs");
    if (table && table.getAttribute("data-live-jobs")) { followJobs(table); }
    var overview = document.querySelector("[data-live-overview]");
    if (overview) { followOverview(overview); }
    var bulk = document.getElementById("bulk");
    if (bulk && bulk.getAttribute("data-live-bulk")) { followBulk(bulk); }
  });
}());
