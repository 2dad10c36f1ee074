/* cti-dialer web console: plain JS over the public HTTP API (/api/v1).
 *
 * Everything shown comes from Redis through the API, and task names,
 * numbers and causes there are written by whoever can reach Redis, so no
 * API string ever goes through innerHTML: the DOM is built with
 * createElement/textContent, attributes with setAttribute.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "cti-dialer.console.token";
  var API = "api/v1/";            // relative, so a reverse proxy may mount the API under a prefix
  var POLL_MS = 2000;
  var RESULTS_PAGE = 50;
  var RESULTS_MAX_ROWS = 500;
  var CHART_MINUTES = 60;
  // The server sends a keepalive every 15 s; a connection silent for much
  // longer is dead even if TCP has not noticed yet.
  var STREAM_IDLE_MS = 45000;
  var BACKOFF_MIN_MS = 1000;
  var BACKOFF_MAX_MS = 30000;
  var STATES = ["running", "paused", "stopped", "waiting", "completed", "error", "unknown"];

  var S = {
    token: null,
    readOnly: true,
    running: false,
    pollTimer: null,
    streamCtrl: null,
    taskRows: new Map(),          // name -> {tr, parts}; rows are updated in place, never rebuilt
    pending: new Set(),           // task names with a control request in flight
    buckets: new Map(),           // minute start (unix s) -> Map(cause -> count)
    statsTimer: null,
    statsReload: null,
    drawSoon: null,
    filter: {task: "", cause: "", number: ""},
    resultIds: new Set(),
    nextCursor: null,
    causes: new Set(),
    epoch: 0                      // bumped on logout so late answers of an old session are dropped
  };

  // --- small DOM helpers ---------------------------------------------------

  function byId(testid) {
    return document.querySelector('[data-testid="' + testid + '"]');
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (attrs[k] !== undefined && attrs[k] !== null) node.setAttribute(k, String(attrs[k]));
      });
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setText(node, text) {
    var s = String(text);
    if (node.textContent !== s) node.textContent = s;
  }

  function int(x) {
    var n = Number(x);
    return Number.isFinite(n) ? Math.trunc(n) : 0;
  }

  function num(x) {
    var n = Number(x);
    return Number.isFinite(n) ? n : 0;
  }

  function str(x) {
    return x === undefined || x === null ? "" : String(x);
  }

  function pad2(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function clock(unixSeconds, withDate) {
    var d = new Date(unixSeconds * 1000);
    if (isNaN(d.getTime())) return "";
    var t = pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
    if (!withDate) return t;
    return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " + t;
  }

  function ago(unixSeconds) {
    if (!unixSeconds) return "never";
    var s = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    return clock(unixSeconds, true);
  }

  function percent(fraction) {
    return (Math.round(num(fraction) * 1000) / 10).toFixed(1) + "%";
  }

  function sleep(ms, signal) {
    return new Promise(function (resolve) {
      var t = setTimeout(resolve, ms);
      if (signal) signal.addEventListener("abort", function () { clearTimeout(t); resolve(); }, {once: true});
    });
  }

  // --- API access ----------------------------------------------------------

  function ApiError(status, body, message) {
    this.status = status;
    this.body = body || {};
    this.message = message;
  }

  function errorText(err) {
    if (err instanceof ApiError) {
      var msg = str(err.body.message) || str(err.body.error) || ("HTTP " + err.status);
      var details = Array.isArray(err.body.details) ? err.body.details : [];
      var extra = details.map(function (d) {
        return d && typeof d === "object" ? str(d.field) + ": " + str(d.reason) : str(d);
      }).join("; ");
      return extra ? msg + " (" + extra + ")" : msg;
    }
    return "API not reachable: " + str(err && err.message);
  }

  function query(params) {
    var q = new URLSearchParams();
    Object.keys(params || {}).forEach(function (k) {
      var v = params[k];
      if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
    });
    var s = q.toString();
    return s ? "?" + s : "";
  }

  // Every call carries the token in the Authorization header, never in
  // the URL, where it would end up in access logs and browser history.
  function api(method, path, token) {
    var epoch = S.epoch;
    return fetch(API + path, {
      method: method,
      headers: {"Authorization": "Bearer " + (token || S.token), "Accept": "application/json"},
      cache: "no-store",
      credentials: "omit"
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
        if (!resp.ok) {
          var err = new ApiError(resp.status, body, "HTTP " + resp.status);
          if (resp.status === 401 && !token && epoch === S.epoch && S.running) {
            sessionLost("The token is no longer accepted; sign in again.");
          }
          throw err;
        }
        if (epoch !== S.epoch) throw new ApiError(0, null, "session ended");
        return body;
      });
    });
  }

  // --- login ---------------------------------------------------------------

  function showLogin(message) {
    byId("app").hidden = true;
    document.getElementById("session-bar").hidden = true;
    byId("login").hidden = false;
    var err = byId("login-error");
    err.hidden = !message;
    setText(err, message || "");
    var input = byId("login-token");
    input.value = "";
    input.focus();
  }

  function checkToken(token) {
    return api("GET", "whoami", token).then(function (who) {
      return {readOnly: !!(who && who.read_only)};
    });
  }

  function login(token, remembered) {
    var submit = byId("login-submit");
    submit.disabled = true;
    return checkToken(token).then(function (who) {
      try {
        sessionStorage.setItem(TOKEN_KEY, token);
      } catch (e) { /* storage disabled: the session lasts as long as the page */ }
      startApp(token, who.readOnly);
    }, function (err) {
      if (err instanceof ApiError && err.status === 401) {
        try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
        showLogin(remembered ? "The saved token is no longer accepted; sign in again."
                             : "The token was rejected.");
      } else {
        showLogin(errorText(err));
      }
    }).then(function () { submit.disabled = false; });
  }

  function sessionLost(message) {
    stopApp();
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
    showLogin(message);
  }

  // --- app lifecycle -------------------------------------------------------

  function startApp(token, readOnly) {
    stopApp();
    S.token = token;
    S.readOnly = readOnly;
    S.running = true;
    byId("login").hidden = true;
    byId("login-error").hidden = true;
    byId("app").hidden = false;
    document.getElementById("session-bar").hidden = false;
    byId("read-only-badge").hidden = !readOnly;
    byId("app").setAttribute("data-read-only", readOnly ? "true" : "false");
    hideBanner();
    poll();
    loadStats();
    loadResults(false);
    runStream();
    S.statsTimer = setInterval(function () {
      // The window slides even when nothing happens; the server's counts
      // also correct anything a dropped connection made us miss.
      loadStats();
    }, 60000);
  }

  function stopApp() {
    S.running = false;
    S.epoch += 1;
    S.token = null;
    if (S.pollTimer) clearTimeout(S.pollTimer);
    if (S.statsTimer) clearInterval(S.statsTimer);
    if (S.statsReload) clearTimeout(S.statsReload);
    if (S.drawSoon) clearTimeout(S.drawSoon);
    S.pollTimer = S.statsTimer = S.statsReload = S.drawSoon = null;
    if (S.streamCtrl) S.streamCtrl.abort();
    S.streamCtrl = null;
    S.taskRows.clear();
    S.pending.clear();
    S.buckets.clear();
    S.resultIds.clear();
    S.causes.clear();
    S.nextCursor = null;
    ["hosts-body", "tasks-body", "lines-body", "results-body", "cause-legend"].forEach(function (id) {
      byId(id).replaceChildren();
    });
    setStreamState("idle", "live: idle");
  }

  // --- status polling ------------------------------------------------------

  function poll() {
    if (!S.running) return;
    var epoch = S.epoch;
    var status = byId("poll-status");
    Promise.allSettled([
      api("GET", "hosts").then(renderHosts),
      api("GET", "tasks").then(renderTasks),
      api("GET", "lines").then(renderLines)
    ]).then(function (outcomes) {
      if (epoch !== S.epoch) return;
      var failed = outcomes.filter(function (o) { return o.status === "rejected"; });
      if (failed.length) {
        setText(status, "update failed: " + errorText(failed[0].reason));
        status.setAttribute("data-ok", "false");
      } else {
        setText(status, "updated " + clock(Date.now() / 1000));
        status.setAttribute("data-ok", "true");
      }
      // Scheduled after the answer, so a slow API is never asked twice at once.
      S.pollTimer = setTimeout(poll, POLL_MS);
    });
  }

  function items(body) {
    return body && Array.isArray(body.items) ? body.items : [];
  }

  function renderHosts(body) {
    var tbody = byId("hosts-body");
    var list = items(body).slice().sort(function (a, b) { return str(a.host).localeCompare(str(b.host)); });
    var rows = list.map(function (h) {
      var tr = el("tr", {"data-testid": "host-row", "data-host": str(h.host)});
      tr.appendChild(el("td", {"data-testid": "host-name"}, str(h.host)));
      var alive = !!h.alive;
      var health = el("td", {"data-testid": "host-health", "data-alive": alive ? "true" : "false"});
      health.appendChild(el("span", {"class": "pill " + (alive ? "ok" : "bad")}, alive ? "alive" : "down"));
      tr.appendChild(health);
      tr.appendChild(el("td", {"data-testid": "host-state"}, str(h.state)));
      var esl = str(h.esl);
      tr.appendChild(el("td", {"data-testid": "host-esl", "class": /^(ok|up|connected)$/i.test(esl) ? "" : "warn"}, esl));
      var rd = str(h.redis);
      tr.appendChild(el("td", {"data-testid": "host-redis", "class": rd === "ok" ? "" : "warn"}, rd));
      tr.appendChild(el("td", {"data-testid": "host-heartbeat", "title": clock(num(h.heartbeat), true)},
        ago(num(h.heartbeat))));
      tr.appendChild(el("td", {"data-testid": "host-calls-up", "class": "num"}, int(h.calls_up)));
      var inUse = h.lines_in_use && typeof h.lines_in_use === "object" ? h.lines_in_use : {};
      var parts = Object.keys(inUse).sort().map(function (k) { return k + ": " + int(inUse[k]); });
      tr.appendChild(el("td", {"data-testid": "host-lines"}, parts.join(", ") || "-"));
      return tr;
    });
    tbody.replaceChildren.apply(tbody, rows);
    byId("hosts-empty").hidden = rows.length > 0;
  }

  function renderLines(body) {
    var tbody = byId("lines-body");
    var list = items(body).slice().sort(function (a, b) { return str(a.name).localeCompare(str(b.name)); });
    var rows = list.map(function (l) {
      var cap = int(l.capacity), used = int(l.in_use);
      var tr = el("tr", {"data-testid": "line-row", "data-line": str(l.name)});
      tr.appendChild(el("td", {"data-testid": "line-name"}, str(l.name)));
      tr.appendChild(el("td", {"data-testid": "line-enable"}, l.enable ? "yes" : "no"));
      var cell = el("td");
      cell.appendChild(bar("line-usage", used, cap, used >= cap && cap > 0 ? "full" : ""));
      cell.appendChild(el("span", {"data-testid": "line-in-use", "class": "bar-label"}, used + " / " + cap));
      tr.appendChild(cell);
      var faulted = !!l.faulted;
      var f = el("td", {"data-testid": "line-faulted", "data-faulted": faulted ? "true" : "false"});
      f.appendChild(el("span", {"class": "pill " + (faulted ? "bad" : "ok")}, faulted ? "faulted" : "ok"));
      tr.appendChild(f);
      return tr;
    });
    tbody.replaceChildren.apply(tbody, rows);
    byId("lines-empty").hidden = rows.length > 0;
  }

  function bar(testid, value, max, extraClass) {
    var outer = el("div", {
      "class": "bar " + (extraClass || ""), "data-testid": testid, "role": "progressbar",
      "aria-valuemin": 0, "aria-valuemax": max, "aria-valuenow": value
    });
    var fill = el("div", {"class": "bar-fill"});
    fill.style.width = (max > 0 ? Math.min(100, 100 * value / max) : 0) + "%";
    outer.appendChild(fill);
    return outer;
  }

  function updateBar(outer, value, max) {
    outer.setAttribute("aria-valuemax", max);
    outer.setAttribute("aria-valuenow", value);
    outer.firstChild.style.width = (max > 0 ? Math.min(100, 100 * value / max) : 0) + "%";
  }

  function taskRow(name) {
    var tr = el("tr", {"data-testid": "task-row", "data-task": name});
    var p = {};
    tr.appendChild(el("td", {"data-testid": "task-name", "class": "name"}, name));
    var stateCell = el("td");
    p.state = el("span", {"data-testid": "task-state", "class": "pill"});
    stateCell.appendChild(p.state);
    tr.appendChild(stateCell);
    var progCell = el("td", {"class": "wide"});
    p.progress = bar("task-progress", 0, 0);
    p.progressText = el("span", {"data-testid": "task-progress-text", "class": "bar-label"});
    progCell.appendChild(p.progress);
    progCell.appendChild(p.progressText);
    tr.appendChild(progCell);
    p.calls = el("td", {"data-testid": "task-calls", "class": "num"});
    p.queued = el("td", {"data-testid": "task-queued", "class": "num"});
    p.redials = el("td", {"data-testid": "task-redials", "class": "num"});
    p.rate = el("td", {"data-testid": "task-answer-rate", "class": "num"});
    [p.calls, p.queued, p.redials, p.rate].forEach(function (td) { tr.appendChild(td); });
    var ctl = el("td", {"class": "controls"});
    p.pause = el("button", {"type": "button", "data-testid": "task-pause"}, "Pause");
    p.resume = el("button", {"type": "button", "data-testid": "task-resume"}, "Resume");
    p.stop = el("button", {"type": "button", "data-testid": "task-stop", "class": "danger"}, "Stop");
    p.pause.addEventListener("click", function () { control(name, "pause"); });
    p.resume.addEventListener("click", function () { control(name, "resume"); });
    p.stop.addEventListener("click", function () { confirmStop(name); });
    [p.pause, p.resume, p.stop].forEach(function (b) { ctl.appendChild(b); });
    tr.appendChild(ctl);
    return {tr: tr, parts: p, status: null};
  }

  function renderTasks(body) {
    var tbody = byId("tasks-body");
    var list = items(body).filter(function (t) { return t && t.name !== undefined; });
    list.sort(function (a, b) { return str(a.name).localeCompare(str(b.name)); });
    var seen = new Set();
    list.forEach(function (t) {
      var name = str(t.name);
      seen.add(name);
      var row = S.taskRows.get(name);
      if (!row) {
        row = taskRow(name);
        S.taskRows.set(name, row);
      }
      updateTask(row, t);
    });
    // Rows are moved only when the order changed: moving a row would take
    // the focus off a button someone is about to press.
    list.forEach(function (t, i) {
      var tr = S.taskRows.get(str(t.name)).tr;
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    S.taskRows.forEach(function (row, name) {
      if (!seen.has(name)) {
        row.tr.remove();
        S.taskRows.delete(name);
      }
    });
    byId("tasks-empty").hidden = list.length > 0;
    var dl = document.getElementById("task-names");
    dl.replaceChildren.apply(dl, list.map(function (t) { return el("option", {value: str(t.name)}); }));
  }

  function updateTask(row, t) {
    var p = row.parts;
    row.status = t;
    var state = STATES.indexOf(t.state) >= 0 ? t.state : "unknown";
    var enable = !!t.enable;
    row.tr.setAttribute("data-state", state);
    row.tr.setAttribute("data-enable", enable ? "true" : "false");
    setText(p.state, state);
    p.state.className = "pill state-" + state;
    var total = int(t.total), processed = int(t.processed);
    updateBar(p.progress, processed, total);
    p.progress.setAttribute("data-processed", processed);
    p.progress.setAttribute("data-total", total);
    setText(p.progressText, processed + " / " + total +
      (total > 0 ? " (" + Math.floor(100 * processed / total) + "%)" : ""));
    p.calls.setAttribute("data-calls-up", int(t.calls_up));
    setText(p.calls, int(t.calls_up) + " / " + int(t.limit));
    setText(p.queued, int(t.queued));
    setText(p.redials, int(t.pending_redials));
    var causes = t.failed_by_cause && typeof t.failed_by_cause === "object" ? t.failed_by_cause : {};
    p.rate.title = "dialed " + int(t.dialed) + ", answered " + int(t.answered) + ", failed " + int(t.failed) +
      Object.keys(causes).sort().map(function (c) { return "\n" + c + ": " + int(causes[c]); }).join("");
    setText(p.rate, percent(t.answer_rate));
    syncButtons(row);
  }

  function syncButtons(row) {
    var p = row.parts, t = row.status || {};
    var name = str(t.name);
    var busy = S.pending.has(name);
    var ro = S.readOnly;
    var finished = t.state === "completed";
    // A read-only token gets no working control: the buttons stay for
    // orientation but are disabled (the API would answer 403 anyway).
    p.pause.disabled = ro || busy || !t.enable;
    p.resume.disabled = ro || busy || !!t.enable || finished;
    p.stop.disabled = ro || busy || (finished && !int(t.queued));
    var why = ro ? "This token is read-only" : "";
    [p.pause, p.resume, p.stop].forEach(function (b) { b.title = why; });
  }

  // --- control -------------------------------------------------------------

  function control(name, action) {
    if (S.readOnly || S.pending.has(name)) return;
    S.pending.add(name);
    var row = S.taskRows.get(name);
    if (row) syncButtons(row);
    hideBanner();
    api("POST", "tasks/" + encodeURIComponent(name) + "/" + action).then(function (res) {
      var r = S.taskRows.get(name);
      if (r && r.status && res && typeof res.enable === "boolean") r.status.enable = res.enable;
      if (action === "stop") {
        showBanner("notice", "Task " + name + " stopped; " + int(res && res.moved) +
          " queued numbers moved aside.");
      }
    }, function (err) {
      if (err instanceof ApiError && err.status === 403) {
        showBanner("error", "Not allowed: this token is read-only.");
      } else if (!(err instanceof ApiError && err.status === 401)) {
        showBanner("error", "Could not " + action + " task " + name + ": " + errorText(err));
      }
    }).then(function () {
      S.pending.delete(name);
      var r = S.taskRows.get(name);
      if (r) syncButtons(r);
      // Show the daemon's view at once rather than at the next tick.
      if (S.running) {
        if (S.pollTimer) clearTimeout(S.pollTimer);
        S.pollTimer = null;
        poll();
      }
    });
  }

  function confirmStop(name) {
    if (S.readOnly) return;
    var dialog = byId("confirm-dialog");
    var row = S.taskRows.get(name);
    var queued = row && row.status ? int(row.status.queued) : 0;
    setText(byId("confirm-text"), "Stop task " + name + "? It is paused and its " + queued +
      " queued numbers are moved aside, so a later resume does not dial them.");
    dialog.setAttribute("data-task", name);
    dialog.showModal();
  }

  function onConfirmClose() {
    var dialog = byId("confirm-dialog");
    var name = dialog.getAttribute("data-task");
    dialog.removeAttribute("data-task");
    if (dialog.returnValue === "ok" && name !== null && S.running) control(name, "stop");
    dialog.returnValue = "";
  }

  function showBanner(kind, message) {
    var b = byId("action-error");
    b.className = "banner " + (kind === "error" ? "error" : "notice");
    b.setAttribute("data-kind", kind);
    setText(b, message);
    b.hidden = false;
  }

  function hideBanner() {
    var b = byId("action-error");
    b.hidden = true;
    b.textContent = "";
  }

  // --- chart of results per cause ------------------------------------------

  var PALETTE = ["#2e7d32", "#f9a825", "#ef6c00", "#c62828", "#6a1b9a", "#1565c0", "#00838f",
    "#8d6e63", "#ad1457", "#558b2f", "#4527a0", "#37474f"];
  var FIXED_COLORS = {
    NORMAL_CLEARING: "#2e7d32", NO_ANSWER: "#f9a825", USER_BUSY: "#ef6c00", CALL_REJECTED: "#c62828",
    ORIGINATOR_CANCEL: "#8d6e63", NO_USER_RESPONSE: "#fbc02d", UNALLOCATED_NUMBER: "#6a1b9a",
    DESTINATION_OUT_OF_ORDER: "#ad1457", NO_LINE_AVAILABLE: "#37474f", UNKNOWN: "#9e9e9e"
  };

  function causeColor(cause) {
    if (Object.prototype.hasOwnProperty.call(FIXED_COLORS, cause)) return FIXED_COLORS[cause];
    var h = 0;
    for (var i = 0; i < cause.length; i++) h = (h * 31 + cause.charCodeAt(i)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }

  function loadStats() {
    if (!S.running) return;
    api("GET", "stats/causes" + query({minutes: CHART_MINUTES})).then(function (body) {
      S.buckets.clear();
      var list = body && Array.isArray(body.buckets) ? body.buckets : [];
      list.forEach(function (b) {
        var m = new Map();
        var causes = b && b.causes && typeof b.causes === "object" ? b.causes : {};
        Object.keys(causes).forEach(function (c) { m.set(c, int(causes[c])); });
        S.buckets.set(int(b.t), m);
      });
      drawChart();
    }, function () { /* the next reload or live results fill it in */ });
  }

  // Live results are counted at once so the chart moves with them; a
  // reload shortly after replaces the local counts with the server's.
  function countResult(res) {
    var ts = num(res.ts) || Date.now() / 1000;
    var minute = Math.floor(ts / 60) * 60;
    var cause = str(res.cause) || "UNKNOWN";
    var m = S.buckets.get(minute);
    if (!m) { m = new Map(); S.buckets.set(minute, m); }
    m.set(cause, (m.get(cause) || 0) + 1);
    // A busy campaign sends many results a second: draw at most 4 times a second.
    if (!S.drawSoon) {
      S.drawSoon = setTimeout(function () { S.drawSoon = null; if (S.running) drawChart(); }, 250);
    }
    if (!S.statsReload) {
      S.statsReload = setTimeout(function () { S.statsReload = null; loadStats(); }, 5000);
    }
  }

  function drawChart() {
    var canvas = byId("cause-chart");
    var now = Math.floor(Date.now() / 1000 / 60) * 60;
    var first = now - (CHART_MINUTES - 1) * 60;
    var totals = new Map();
    var maxStack = 0;
    var columns = [];
    for (var i = 0; i < CHART_MINUTES; i++) {
      var t = first + i * 60;
      var m = S.buckets.get(t) || new Map();
      var sum = 0;
      m.forEach(function (v, c) { sum += v; totals.set(c, (totals.get(c) || 0) + v); });
      maxStack = Math.max(maxStack, sum);
      columns.push({t: t, causes: m});
    }
    S.buckets.forEach(function (_, t) { if (t < first - 60) S.buckets.delete(t); });
    var order = Array.from(totals.keys()).sort(function (a, b) { return totals.get(b) - totals.get(a) || (a < b ? -1 : 1); });
    var grand = 0;
    totals.forEach(function (v) { grand += v; });
    canvas.setAttribute("data-total", grand);

    var dpr = window.devicePixelRatio || 1;
    var cssW = canvas.clientWidth || 900, cssH = canvas.clientHeight || 240;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    var left = 44, right = 8, top = 8, bottom = 24;
    var w = cssW - left - right, h = cssH - top - bottom;
    var yMax = niceMax(maxStack);
    ctx.font = "11px sans-serif";
    ctx.fillStyle = "#666";
    ctx.strokeStyle = "#e0e0e0";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (var g = 0; g <= 4; g++) {
      var gy = top + h - h * g / 4;
      ctx.beginPath(); ctx.moveTo(left, gy + 0.5); ctx.lineTo(left + w, gy + 0.5); ctx.stroke();
      ctx.fillText(String(Math.round(yMax * g / 4)), left - 6, gy);
    }
    var colW = w / CHART_MINUTES;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    columns.forEach(function (col, idx) {
      var x = left + idx * colW;
      var y = top + h;
      order.forEach(function (c) {
        var v = col.causes.get(c) || 0;
        if (!v) return;
        var bh = h * v / yMax;
        ctx.fillStyle = causeColor(c);
        ctx.fillRect(x + 1, y - bh, Math.max(1, colW - 2), bh);
        y -= bh;
      });
      var d = new Date(col.t * 1000);
      if (d.getMinutes() % 10 === 0) {
        ctx.fillStyle = "#666";
        ctx.fillText(pad2(d.getHours()) + ":" + pad2(d.getMinutes()), x + colW / 2, top + h + 6);
      }
    });
    renderLegend(order, totals);
  }

  function niceMax(v) {
    if (v <= 4) return 4;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * p >= v) return Math.ceil(steps[i] * p / 4) * 4;
    }
    return v;
  }

  function renderLegend(order, totals) {
    var ul = byId("cause-legend");
    var items_ = order.map(function (c) {
      var li = el("li", {"data-testid": "cause-legend-item", "data-cause": c, "data-count": totals.get(c)});
      var sw = el("span", {"class": "swatch"});
      sw.style.backgroundColor = causeColor(c);
      li.appendChild(sw);
      li.appendChild(el("span", null, c + ": " + totals.get(c)));
      return li;
    });
    if (!items_.length) items_.push(el("li", {"class": "empty"}, "No result in the last hour."));
    ul.replaceChildren.apply(ul, items_);
    order.forEach(function (c) { S.causes.add(c); });
    var dl = document.getElementById("cause-names");
    dl.replaceChildren.apply(dl, Array.from(S.causes).sort().map(function (c) { return el("option", {value: c}); }));
  }

  // --- results table -------------------------------------------------------

  function readFilter() {
    return {
      task: byId("results-filter-task").value.trim(),
      cause: byId("results-filter-cause").value.trim(),
      number: byId("results-filter-number").value.trim()
    };
  }

  // keepLive: the filter is unchanged (a reload after the feed reconnected),
  // so rows the feed added meanwhile still belong in the table.
  function loadResults(more, keepLive) {
    if (!S.running) return;
    var f = S.filter;
    var params = {task: f.task, cause: f.cause, number: f.number, limit: RESULTS_PAGE};
    if (more) params.cursor = S.nextCursor;
    var asked = JSON.stringify(f);
    var moreBtn = byId("results-more");
    moreBtn.disabled = true;
    api("GET", "results" + query(params)).then(function (body) {
      if (asked !== JSON.stringify(S.filter)) return;   // the filter changed meanwhile
      var tbody = byId("results-body");
      var list = items(body);
      if (!more) {
        // Live rows newer than this page arrived while it was on its way: keep them.
        var newest = list.length ? str(list[0]._id) : "";
        var keep = !keepLive ? [] : Array.from(tbody.children).filter(function (tr) {
          return !newest || streamIdAfter(tr.getAttribute("data-id") || "", newest);
        });
        tbody.replaceChildren.apply(tbody, keep);
        S.resultIds = new Set(keep.map(function (tr) { return tr.getAttribute("data-id"); }));
      }
      list.forEach(function (res) {
        var id = str(res._id);
        if (id && S.resultIds.has(id)) return;
        if (id) S.resultIds.add(id);
        tbody.appendChild(resultRow(res));
      });
      S.nextCursor = body && body.next !== undefined && body.next !== null ? body.next : null;
      moreBtn.hidden = S.nextCursor === null;
      byId("results-empty").hidden = tbody.childElementCount > 0;
    }, function (err) {
      if (!(err instanceof ApiError && err.status === 401)) showBanner("error", "Results: " + errorText(err));
    }).then(function () { moreBtn.disabled = false; });
  }

  // Stream ids are "<ms>-<seq>"; compared as numbers, not as text.
  function streamIdAfter(a, b) {
    var pa = a.split("-"), pb = b.split("-");
    var ma = Number(pa[0]), mb = Number(pb[0]);
    if (!Number.isFinite(ma) || !Number.isFinite(mb)) return false;
    return ma > mb || (ma === mb && Number(pa[1] || 0) > Number(pb[1] || 0));
  }

  function resultTime(res) {
    var ts = num(res.ts);
    if (!ts) {
      var ms = parseInt(str(res._id).split("-")[0], 10);   // a stream id starts with its time in ms
      ts = Number.isFinite(ms) ? ms / 1000 : 0;
    }
    return ts;
  }

  function resultRow(res) {
    var tr = el("tr", {"data-testid": "result-row", "data-id": str(res._id)});
    var ts = resultTime(res);
    tr.appendChild(el("td", {"data-testid": "result-time", "title": str(res._id)}, ts ? clock(ts, true) : ""));
    tr.appendChild(el("td", {"data-testid": "result-task"}, str(res.task || res.config)));
    tr.appendChild(el("td", {"data-testid": "result-number"}, str(res.number)));
    var cause = str(res.cause);
    var cc = el("td", {"data-testid": "result-cause"});
    var sw = el("span", {"class": "swatch"});
    sw.style.backgroundColor = causeColor(cause || "UNKNOWN");
    cc.appendChild(sw);
    cc.appendChild(document.createTextNode(cause));
    tr.appendChild(cc);
    tr.appendChild(el("td", {"data-testid": "result-verdict"}, str(res.verdict)));
    tr.appendChild(el("td", {"data-testid": "result-attempt", "class": "num"}, str(res.attempt)));
    tr.appendChild(el("td", {"data-testid": "result-line"}, str(res.line)));
    tr.appendChild(el("td", {"data-testid": "result-host"}, str(res.host)));
    tr.appendChild(el("td", {"data-testid": "result-billsec", "class": "num"}, str(res.billsec)));
    return tr;
  }

  function matchesFilter(res) {
    var f = S.filter;
    if (f.task && str(res.task || res.config) !== f.task) return false;
    if (f.cause && str(res.cause).toUpperCase() !== f.cause.toUpperCase()) return false;
    if (f.number && str(res.number) !== f.number) return false;
    return true;
  }

  function liveResult(res) {
    if (!res || typeof res !== "object") return;
    countResult(res);
    if (!matchesFilter(res)) return;
    var id = str(res._id);
    if (id && S.resultIds.has(id)) return;
    if (id) S.resultIds.add(id);
    var tbody = byId("results-body");
    tbody.insertBefore(resultRow(res), tbody.firstChild);
    while (tbody.childElementCount > RESULTS_MAX_ROWS) {
      var last = tbody.lastElementChild;
      S.resultIds.delete(last.getAttribute("data-id"));
      last.remove();
      // Rows were cut from the end, so paging on from the old cursor would leave a gap.
      S.nextCursor = null;
      byId("results-more").hidden = true;
    }
    byId("results-empty").hidden = true;
  }

  // --- live feed -----------------------------------------------------------

  function setStreamState(state, text) {
    var s = byId("stream-status");
    s.setAttribute("data-state", state);
    setText(s, text);
  }

  // Server-sent events read with fetch(): EventSource cannot send the
  // Authorization header, and the token must never go into a URL.
  function runStream() {
    var ctrl = new AbortController();
    S.streamCtrl = ctrl;
    var backoff = BACKOFF_MIN_MS;
    var connectedBefore = false;

    function once() {
      var conn = new AbortController();
      var onAbort = function () { conn.abort(); };
      ctrl.signal.addEventListener("abort", onAbort, {once: true});
      var idle = null;
      function touch() {
        if (idle) clearTimeout(idle);
        idle = setTimeout(function () { conn.abort(); }, STREAM_IDLE_MS);
      }
      setStreamState("connecting", "live: connecting");
      touch();
      return fetch(API + "results/stream", {
        headers: {"Authorization": "Bearer " + S.token, "Accept": "text/event-stream"},
        cache: "no-store",
        credentials: "omit",
        signal: conn.signal
      }).then(function (resp) {
        if (resp.status === 401) {
          throw new ApiError(401, null, "unauthorized");
        }
        if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
        setStreamState("live", "live");
        backoff = BACKOFF_MIN_MS;
        if (connectedBefore) {
          // Whatever arrived while we were away is only in the stream's history.
          loadResults(false, true);
          loadStats();
        }
        connectedBefore = true;
        var parser = sseParser(function (type, data) {
          if (type !== "result" && type !== "message") return;
          var res;
          try { res = JSON.parse(data); } catch (e) { return; }
          liveResult(res);
        });
        var reader = resp.body.getReader();
        var decoder = new TextDecoder("utf-8");
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) {
              parser(decoder.decode());
              throw new Error("stream closed");
            }
            touch();
            parser(decoder.decode(chunk.value, {stream: true}));
            return pump();
          });
        }
        return pump();
      }).finally(function () {
        if (idle) clearTimeout(idle);
        ctrl.signal.removeEventListener("abort", onAbort);
      });
    }

    function loop() {
      if (ctrl.signal.aborted) return;
      once().catch(function (err) {
        if (ctrl.signal.aborted) return;
        if (err instanceof ApiError && err.status === 401) {
          sessionLost("The token is no longer accepted; sign in again.");
          return;
        }
        var wait = Math.round(backoff * (0.75 + Math.random() * 0.5));
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
        setStreamState("reconnecting", "live: reconnecting in " + Math.ceil(wait / 1000) + " s");
        return sleep(wait, ctrl.signal).then(loop);
      });
    }
    loop();
  }

  // The event-stream format: lines ending in CR, LF or CRLF; a blank line
  // ends an event; "data" lines are joined with LF; ":" lines are comments.
  function sseParser(dispatch) {
    var buf = "";
    var type = "", data = [];
    return function (text) {
      buf += text;
      var start = 0;
      for (var i = 0; i < buf.length; i++) {
        var ch = buf.charCodeAt(i);
        if (ch !== 10 && ch !== 13) continue;
        if (ch === 13 && i + 1 === buf.length) break;   // a CR that may be the first half of CRLF
        var line = buf.slice(start, i);
        if (ch === 13 && buf.charCodeAt(i + 1) === 10) i++;
        start = i + 1;
        if (line === "") {
          if (data.length) dispatch(type || "message", data.join("\n"));
          type = ""; data = [];
          continue;
        }
        if (line.charAt(0) === ":") continue;
        var colon = line.indexOf(":");
        var field = colon < 0 ? line : line.slice(0, colon);
        var value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.charAt(0) === " ") value = value.slice(1);
        if (field === "event") type = value;
        else if (field === "data") data.push(value);
      }
      buf = buf.slice(start);
    };
  }

  // --- wiring --------------------------------------------------------------

  function init() {
    byId("login-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var token = byId("login-token").value.trim();
      if (!token) {
        showLogin("Enter a token.");
        return;
      }
      login(token, false);
    });
    byId("logout").addEventListener("click", function () {
      stopApp();
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
      showLogin("");
    });
    byId("results-filters").addEventListener("submit", function (ev) {
      ev.preventDefault();
      S.filter = readFilter();
      S.nextCursor = null;
      loadResults(false);
    });
    byId("results-clear").addEventListener("click", function () {
      ["results-filter-task", "results-filter-cause", "results-filter-number"].forEach(function (id) {
        byId(id).value = "";
      });
      S.filter = readFilter();
      S.nextCursor = null;
      loadResults(false);
    });
    byId("results-more").addEventListener("click", function () {
      if (S.nextCursor !== null) loadResults(true);
    });
    byId("confirm-dialog").addEventListener("close", onConfirmClose);
    window.addEventListener("resize", function () { if (S.running) drawChart(); });
    setInterval(function () { if (S.running) drawChart(); }, 30000);

    var saved = null;
    try { saved = sessionStorage.getItem(TOKEN_KEY); } catch (e) { saved = null; }
    if (saved) {
      byId("login").hidden = true;
      login(saved, true);
    } else {
      showLogin("");
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
