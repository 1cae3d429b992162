// The owner's console: a thin client of the documented admin API (/api/openapi.json). Plain
// DOM and SVG, no framework: the whole console is smaller than one charting library.
(function () {
  "use strict";
  var KEY = "wxedge-admin-token";
  var token = sessionStorage.getItem(KEY);
  var $ = function (s) { return document.querySelector(s); };

  // ---- language: zh-CN or en, from the browser, switchable, remembered -----------------------

  var LANG_KEY = "wxedge-console-lang";
  var lang = localStorage.getItem(LANG_KEY) || (/^zh/i.test(navigator.language || "") ? "zh-CN" : "en");
  var ZH = window.WXEDGE_ZH || {};
  var PREFIXES = Object.keys(ZH).filter(function (k) { return /[ :(]$/.test(k); }).sort(function (a, b) { return b.length - a.length; });
  /** A string in the console's language: the whole text, or a known lead-in of it. */
  function tr(text) {
    if (lang !== "zh-CN" || !text) return text;
    var t = text.trim();
    if (ZH[t]) return text.replace(t, ZH[t]);
    for (var i = 0; i < PREFIXES.length; i++) if (text.indexOf(PREFIXES[i]) === 0) return ZH[PREFIXES[i]] + text.slice(PREFIXES[i].length);
    return text;
  }
  var originals = new WeakMap();
  /** Translates (or restores) the page's text and labels, except what the owner typed or copies. */
  function translate(root) {
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    var node;
    while ((node = walker.nextNode())) {
      var p = node.parentNode;
      // Not code, not what followers wrote, not what the owner copies.
      if (!p || /^(SCRIPT|STYLE|TEXTAREA|PRE|CODE)$/.test(p.nodeName) || (p.closest && p.closest("#entries, #threads, #e-snippet, #lookup-result"))) continue;
      if (!originals.has(node)) originals.set(node, node.nodeValue);
      var en = originals.get(node);
      var want = lang === "zh-CN" ? tr(en) : en;
      if (node.nodeValue !== want) node.nodeValue = want;
    }
    var labelled = root.querySelectorAll ? Array.from(root.querySelectorAll("[placeholder], [aria-label], [title]")) : [];
    if (root.matches && root.matches("[placeholder], [aria-label], [title]")) labelled.push(root);
    labelled.forEach(function (el) {
      ["placeholder", "aria-label", "title"].forEach(function (a) {
        if (!el.hasAttribute(a)) return;
        var key = "data-en-" + a;
        if (!el.hasAttribute(key)) el.setAttribute(key, el.getAttribute(a));
        var en = el.getAttribute(key);
        el.setAttribute(a, lang === "zh-CN" ? tr(en) : en);
      });
    });
  }
  function setLang(l) {
    lang = l;
    localStorage.setItem(LANG_KEY, l);
    document.documentElement.lang = l === "zh-CN" ? "zh-CN" : "en";
    $("#lang").value = l;
    translate(document.documentElement);
  }
  $("#lang").addEventListener("change", function (e) { setLang(e.target.value); });
  // What the console draws later is translated as it appears.
  new MutationObserver(function (records) {
    if (lang !== "zh-CN") return;
    records.forEach(function (r) { r.addedNodes.forEach(function (n) { if (n.nodeType === 1) translate(n); else if (n.nodeType === 3 && n.parentNode) translate(n.parentNode); }); });
  }).observe(document.body, { childList: true, subtree: true });

  // ---- talking to the admin API -------------------------------------------------------------

  function notice(text, kind) {
    var n = $("#notice");
    text = tr(text);
    n.textContent = text || "";
    n.className = kind || "error";
    n.hidden = !text;
    if (kind === "ok") setTimeout(function () { if (n.textContent === text) n.hidden = true; }, 5000);
  }

  /** Errors in plain words: the worker's message, plus WeChat's errcode when it was WeChat. */
  function plain(status, d) {
    if (!d) return tr("The worker answered HTTP ") + status + (lang === "zh-CN" ? "，没有说明。" : " with no explanation.");
    var m = d.message || d.error || "HTTP " + status;
    var lead = lang === "zh-CN" && (window.WXEDGE_ZH_ERRORS || {})[d.error];
    if (lead) m = lead + "：" + m;
    if (d.errcode !== undefined) m += lang === "zh-CN" ? "（微信错误码 " + d.errcode + (d.errmsg ? "：" + d.errmsg : "") + "）" : " (WeChat error " + d.errcode + (d.errmsg ? ": " + d.errmsg : "") + ")";
    return m;
  }

  async function api(path, opts) {
    opts = opts || {};
    var headers = { authorization: "Bearer " + token };
    if (opts.body !== undefined) headers["content-type"] = "application/json";
    var r = await fetch("/api/admin" + path, { method: opts.method || "GET", headers: headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) });
    var data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (r.status === 401) { logout(); throw new Error("The admin token was refused. Please log in again."); }
    if (!r.ok) { var err = new Error(plain(r.status, data)); err.data = data; err.status = r.status; throw err; }
    return data;
  }

  /** Runs an async handler and shows whatever goes wrong; never swallows an error. */
  function guard(f) {
    return function () {
      var args = arguments;
      return Promise.resolve().then(function () { return f.apply(null, args); }).catch(function (e) { notice(e.message); });
    };
  }

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k];
      else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), attrs[k]);
      else if (attrs[k] !== undefined && attrs[k] !== false) e.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }

  // ---- log in, log out, pages --------------------------------------------------------------

  $("#login-form").addEventListener("submit", guard(async function (e) {
    e.preventDefault();
    var t = $("#token").value.trim();
    var r = await fetch("/api/admin/rules", { headers: { authorization: "Bearer " + t } });
    if (r.status === 401) { notice("That token was refused: it is not this worker's ADMIN_TOKEN."); return; }
    if (!r.ok) { notice(plain(r.status, await r.json().catch(function () { return null; }))); return; }
    token = t;
    sessionStorage.setItem(KEY, t);
    $("#token").value = "";
    notice("");
    enter();
  }));

  function logout() {
    token = null;
    sessionStorage.removeItem(KEY);
    $("#tabs").hidden = true;
    $("#logout").hidden = true;
    document.querySelectorAll(".page").forEach(function (p) { p.hidden = true; });
    $("#login").hidden = false;
  }
  $("#logout").addEventListener("click", function () { logout(); notice("Logged out.", "ok"); });

  var loaded = {};
  function enter() {
    $("#login").hidden = true;
    $("#tabs").hidden = false;
    $("#logout").hidden = false;
    // The admin view of health: the account's kind, and what the owner should fix (plain mode).
    api("/health").then(function (h) {
      var kinds = { service: ["service account", "服务号"], subscription: ["subscription account", "订阅号"] };
      $("#account").textContent = h.account_kind ? (kinds[h.account_kind] || [h.account_kind, h.account_kind])[lang === "zh-CN" ? 1 : 0] : "";
      var w = $("#warnings");
      w.replaceChildren.apply(w, (h.warnings || []).map(function (t) { return el("p", { text: t }); }));
      w.hidden = !(h.warnings || []).length;
    }, function () {});
    route();
  }

  function route() {
    if (!token) return;
    var page = (location.hash || "#menu").slice(1);
    if (!document.getElementById(page) || !document.getElementById(page).classList.contains("page")) page = "menu";
    document.querySelectorAll(".page").forEach(function (p) { p.hidden = p.id !== page; });
    document.querySelectorAll("#tabs a").forEach(function (a) {
      if (a.getAttribute("href") === "#" + page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    var load = { menu: loadMenu, replies: loadRules, broadcasts: loadBroadcasts, notifications: loadNotifications, inbox: loadInbox, followers: loadFollowers, embed: renderEmbed }[page];
    if (load && (!loaded[page] || page === "followers" || page === "broadcasts" || page === "notifications" || page === "inbox")) {
      loaded[page] = true;
      var section = document.getElementById(page);
      section.removeAttribute("data-loaded");
      // Marks the page ready, so nothing typed before the data arrived is overwritten by it.
      guard(load)().then(function () { section.setAttribute("data-loaded", ""); });
    }
  }
  window.addEventListener("hashchange", route);
  setLang(lang);

  // ---- inbox -------------------------------------------------------------------------------

  var openThread = null, lastTyping = 0;
  var WHO = { follower: "follower", auto: "automatic reply", owner: "you", broadcast: "broadcast", notification: "notification" };
  var EVENTS_ZH = { subscribe: "关注", scan: "扫码", click: "点击菜单", unsubscribe: "取消关注" };

  function renderThreads(list) {
    $("#threads").replaceChildren.apply($("#threads"), list.threads.map(function (t) {
      var b = el("button", { type: "button", "aria-current": t.openid === openThread ? "true" : "false", "data-openid": t.openid, onclick: guard(async function () {
        openThread = t.openid;
        await api("/inbox/" + encodeURIComponent(t.openid) + "/read", { method: "POST", body: {} });
        await refreshInbox();
      }) }, [
        el("span", { class: "who", text: t.openid }), el("span", { class: "muted", text: /^\[[a-z]+\]$/.test(t.preview) ? "[" + tr(t.preview.slice(1, -1)) + "]" : t.preview }),
        t.unread ? el("span", { class: "unread", text: String(t.unread) }) : null,
        t.transferred ? el("span", { class: "tag", text: tr("handed to customer service") }) : null,
        t.handled ? el("span", { class: "muted", text: tr("handled") }) : null,
      ]);
      return el("li", {}, [b]);
    }));
    var badge = $("#inbox-unread");
    badge.textContent = String(list.unread);
    badge.hidden = !list.unread;
  }

  function renderThread(c) {
    $("#thread-empty").hidden = true;
    $("#thread-head").hidden = false;
    $("#reply-form").hidden = false;
    $("#thread-who").textContent = c.openid;
    var w = c.window || {};
    var until = w.open ? new Date(w.closes_at * 1000).toLocaleString(lang) : "";
    $("#thread-window").textContent = !w.open ? tr("window closed")
      : lang === "zh-CN" ? "客服窗口开放至 " + until + "，还可发 " + w.remaining + " 条"
      : "window open until " + until + ", " + w.remaining + " message(s) left";
    $("#reply-send").disabled = !c.can_reply;
    $("#reply-why").textContent = c.can_reply ? "" : c.why_not || "";
    $("#entries").replaceChildren.apply($("#entries"), c.entries.map(function (e) {
      var kids = [el("span", { class: "meta", text: tr(WHO[e.by]) + " · " + tr(e.kind) + " · " + new Date(e.at * 1000).toLocaleTimeString(lang) })];
      if (e.kind === "image" && e.url) kids.push(el("img", { src: e.url, alt: tr("image from the follower") }));
      // An event's own words (subscribe, scan, click, unsubscribe), not what the follower wrote.
      if (e.text) kids.push(document.createTextNode(e.kind === "event" && lang === "zh-CN" ? e.text.replace(/^[a-z]+/, function (w) { return EVENTS_ZH[w] || w; }) : e.text));
      if (e.kind === "link" && e.url) kids.push(el("a", { href: e.url, rel: "noopener", target: "_blank", text: " " + e.url }));
      return el("li", { class: e.dir }, kids);
    }));
    $("#entries").scrollTop = $("#entries").scrollHeight;
  }

  async function refreshInbox() {
    renderThreads(await api("/inbox?limit=50"));
    if (openThread) {
      renderThread(await api("/inbox/" + encodeURIComponent(openThread)));
      document.querySelectorAll("#threads button").forEach(function (b) { b.setAttribute("aria-current", b.getAttribute("data-openid") === openThread ? "true" : "false"); });
    }
  }

  var inboxTimer = null, live = null, liveSoon = null;
  /** The live channel: a one-time ticket (asked with the token, which stays out of the URL),
   *  then a WebSocket that says which conversation moved; it reconnects when it drops. */
  async function openLive() {
    if (live || !token) return;
    var t = await api("/inbox/ticket", { method: "POST", body: {} });
    var ws = new WebSocket(location.origin.replace(/^http/, "ws") + t.url);
    live = ws;
    // Once open, read the inbox again: what moved between the first read and the channel.
    ws.onopen = function () { $("#inbox").setAttribute("data-live", "open"); refreshInbox().catch(function () {}); };
    ws.onmessage = function (e) {
      var m = JSON.parse(e.data);
      if (m.type !== "changed") return;
      clearTimeout(liveSoon);
      liveSoon = setTimeout(function () { refreshInbox().catch(function () {}); }, 100);
    };
    ws.onclose = function () {
      live = null;
      $("#inbox").setAttribute("data-live", "closed");
      setTimeout(function () { openLive().catch(function () {}); }, 1000);
    };
  }
  window.__wxedgeInboxLive = function () { return live; }; // tests drop it to see it come back

  async function loadInbox() {
    await refreshInbox();
    await openLive().catch(function (e) { notice(lang === "zh-CN" ? "实时消息未连接（" + e.message + "），每 10 秒刷新一次。" : "The live inbox is not connected (" + e.message + "); it refreshes every 10 s."); });
    // Every 10 s while the live channel is down; every minute while it is up, for what a push
    // in another data center did not tell it (it tells the channel once KV shows a console
    // open, which may take a minute there).
    var ticks = 0;
    if (!inboxTimer) inboxTimer = setInterval(function () { ticks++; if (!$("#inbox").hidden && !document.hidden && (!live || ticks % 6 === 0)) refreshInbox().catch(function () {}); }, 10000);
  }

  $("#reply-text").addEventListener("input", function () {
    // "typing…" for the follower while the owner types, at most every 10 s.
    if (!openThread || Date.now() - lastTyping < 10000) return;
    lastTyping = Date.now();
    api("/inbox/" + encodeURIComponent(openThread) + "/typing", { method: "POST", body: { typing: true } }).catch(function () {});
  });
  $("#reply-form").addEventListener("submit", guard(async function (e) {
    e.preventDefault();
    var c = await api("/inbox/" + encodeURIComponent(openThread) + "/messages", { method: "POST", body: { type: "text", content: $("#reply-text").value } });
    $("#reply-text").value = "";
    lastTyping = 0;
    renderThread(c);
    await api("/inbox/" + encodeURIComponent(openThread) + "/read", { method: "POST", body: {} });
  }));
  $("#thread-handled").addEventListener("click", guard(async function () {
    await api("/inbox/" + encodeURIComponent(openThread) + "/read", { method: "POST", body: { handled: true } });
    await refreshInbox();
  }));

  // ---- notifications ---------------------------------------------------------------------------

  var templates = [];
  var RULES = { thing: "any text", character_string: "letters, digits, symbols", time: "a time, e.g. 2026-12-03 15:01", date: "a date, e.g. 2026-12-03",
    amount: "a sum, e.g. ¥12.50", number: "digits", letter: "letters", symbol: "symbols", phrase: "Chinese only, e.g. 已发货", car_number: "a licence plate",
    name: "a name", phone_number: "a phone number", other: "any text" };

  var RULES_ZH = { thing: "任意文字", character_string: "字母、数字和符号", time: "时间，如 2026-12-03 15:01", date: "日期，如 2026-12-03",
    amount: "金额，如 ¥12.50", number: "数字", letter: "字母", symbol: "符号", phrase: "仅汉字，如 已发货", car_number: "车牌号", name: "姓名",
    phone_number: "电话号码", other: "任意文字" };

  function currentTemplate() { return templates.find(function (t) { return t.template_id === $("#n-template").value; }); }

  function renderFields() {
    var t = currentTemplate(), box = $("#n-fields");
    box.replaceChildren();
    if (!t) return;
    t.fields.forEach(function (f) {
      var input = el("input", { "data-key": f.key, maxlength: String(f.max_chars * 2), required: true, oninput: preview });
      var count = el("span", { class: "count field-rule", text: "" });
      box.appendChild(el("label", {}, [document.createTextNode(f.name + " (" + f.key + ") "), input, count,
        el("span", { class: "muted field-rule", text: lang === "zh-CN" ? " " + f.kind + "：" + (RULES_ZH[f.kind] || "") + "，最多 " + f.max_chars + " 字" : " " + f.kind + ": " + (RULES[f.kind] || "") + ", at most " + f.max_chars })]));
    });
    preview();
  }

  /** The card as the follower's WeChat draws it, with each field's length against its limit. */
  function preview() {
    var t = currentTemplate(), card = $("#n-preview");
    card.replaceChildren();
    if (!t) return;
    card.appendChild(el("div", { class: "t", text: t.title }));
    var grid = el("div", { class: "f" });
    t.fields.forEach(function (f) {
      var input = document.querySelector('#n-fields input[data-key="' + f.key + '"]');
      var v = input ? input.value : "";
      var n = Array.from(v).length;
      var count = input && input.parentNode.querySelector(".count");
      if (count) { count.textContent = n + "/" + f.max_chars; count.classList.toggle("over", n > f.max_chars || /[\r\n]/.test(v)); }
      grid.appendChild(el("span", { text: f.name })); grid.appendChild(el("span", { text: v || "—" }));
    });
    card.appendChild(grid);
    if ($("#n-url").value) card.appendChild(el("div", { class: "more", text: "View details ›" }));
  }
  $("#n-template").addEventListener("change", renderFields);
  $("#n-url").addEventListener("input", preview);

  async function loadNotifications() {
    var list = await api("/notifications/templates");
    templates = list.templates;
    var sel = $("#n-template"), keep = sel.value;
    sel.replaceChildren.apply(sel, templates.map(function (t) { return el("option", { value: t.template_id, text: t.title + (t.source === "subscribe" ? (lang === "zh-CN" ? "（订阅通知）" : " (subscribe)") : "") }); }));
    if (keep && templates.some(function (t) { return t.template_id === keep; })) sel.value = keep;
    renderFields();
    await refreshNotifications();
  }

  async function refreshNotifications() {
    var [h, b] = await Promise.all([api("/notifications?limit=30"), api("/notifications/budget")]);
    $("#n-budget").textContent = lang === "zh-CN" ? "今天：已发送 " + b.sent + " 条，还剩 " + b.left + " 条（共 " + b.limit + " 条）" : "Today: " + b.sent + " sent, " + b.left + " of " + b.limit + " left";
    var titles = {};
    templates.forEach(function (t) { titles[t.template_id] = t.title; });
    $("#n-history tbody").replaceChildren.apply($("#n-history tbody"), h.notifications.map(function (n) {
      return el("tr", {}, [el("td", { text: n.id }), el("td", { text: new Date(n.created_at * 1000).toLocaleString(lang) }), el("td", { text: n.openid }),
        el("td", { text: titles[n.template_id] || n.template_id }), el("td", { class: "status-" + n.status, text: n.status }), el("td", { text: n.error || "" })]);
    }));
  }

  $("#notify-form").addEventListener("submit", guard(async function (e) {
    e.preventDefault();
    var data = {};
    document.querySelectorAll("#n-fields input").forEach(function (i) { data[i.getAttribute("data-key")] = i.value; });
    var body = { openid: $("#n-openid").value.trim(), template_id: $("#n-template").value, data: data };
    if ($("#n-url").value) body.url = $("#n-url").value;
    $("#n-result").replaceChildren();
    try {
      var n = await api("/notifications", { method: "POST", body: body });
      $("#n-result").appendChild(el("p", { class: "status-" + n.status, text: lang === "zh-CN" ? "通知 " + n.id + "：" + tr(n.status) + (n.error ? " — " + n.error : "") : "Notification " + n.id + ": " + n.status + (n.error ? " — " + n.error : "") }));
    } catch (err) {
      $("#n-result").appendChild(el("p", { class: "problems", text: err.message }));
      var key = (err.message.match(/data\.([a-z_0-9]+)/) || [])[1];
      var input = key && document.querySelector('#n-fields input[data-key="' + key + '"]');
      if (input) { input.setAttribute("aria-invalid", "true"); input.focus(); }
      return;
    }
    document.querySelectorAll("#n-fields input").forEach(function (i) { i.removeAttribute("aria-invalid"); });
    await refreshNotifications();
    // WeChat's job-finish event moves a sent notification on within a few seconds.
    setTimeout(guard(refreshNotifications), 2000);
  }));

  // ---- menu editor ---------------------------------------------------------------------------

  var TYPES = { click: "key", view: "url", scancode_push: "key", scancode_waitmsg: "key", pic_sysphoto: "key", pic_photo_or_album: "key",
    pic_weixin: "key", location_select: "key", media_id: "media_id", article_id: "article_id", article_view_limited: "article_id", miniprogram: "appid" };
  // The types as WeChat's documentation names them in Chinese (the type itself stays beside it).
  var TYPES_ZH = { click: "点击推事件", view: "跳转网页", scancode_push: "扫码推事件", scancode_waitmsg: "扫码推事件且弹出提示框", pic_sysphoto: "弹出系统拍照发图",
    pic_photo_or_album: "弹出拍照或相册发图", pic_weixin: "弹出微信相册发图", location_select: "弹出地理位置选择", media_id: "下发素材消息",
    article_id: "下发已发布的图文", article_view_limited: "跳转已发布的图文", miniprogram: "跳转小程序" };
  var LIMITS = { top: 16, sub: 60, buttons: 3, subs: 5, key: 128, url: 1024 };
  var menu = { button: [] };
  var bytes = function (s) { return new TextEncoder().encode(s || "").length; };

  function fieldsOf(b) {
    var f = b.sub_button && b.sub_button.length ? [] : [TYPES[b.type] || "key"];
    if (b.type === "miniprogram") f.push("pagepath", "url");
    return f;
  }

  function buttonEditor(b, path, top, onRemove) {
    var max = top ? LIMITS.top : LIMITS.sub;
    var unit = lang === "zh-CN" ? " 字节" : " bytes";
    var counter = el("span", { class: "count", text: bytes(b.name) + "/" + max + unit });
    var name = el("input", { value: b.name || "", "data-path": path + ".name", "aria-label": "Name", oninput: function () {
      b.name = name.value;
      counter.textContent = bytes(b.name) + "/" + max + unit;
      counter.classList.toggle("over", bytes(b.name) > max);
      changed(false);
    } });
    counter.classList.toggle("over", bytes(b.name) > max);
    var isMenu = top && b.sub_button && b.sub_button.length > 0;
    var type = el("select", { "data-path": path + ".type", "aria-label": "Type", onchange: function () {
      if (type.value === "submenu") { delete b.type; b.sub_button = b.sub_button && b.sub_button.length ? b.sub_button : [{ name: "", type: "click", key: "" }]; }
      else { b.type = type.value; delete b.sub_button; }
      changed(true);
    } });
    if (top) type.appendChild(el("option", { value: "submenu", text: "opens a sub-menu", selected: isMenu }));
    Object.keys(TYPES).forEach(function (t) { type.appendChild(el("option", { value: t, text: lang === "zh-CN" ? TYPES_ZH[t] + "（" + t + "）" : t, selected: !isMenu && b.type === t })); });
    var row = el("div", { class: top ? "btn top" : "btn sub" }, [
      el("label", {}, [document.createTextNode(top ? "Button" : "Sub-button"), name]), counter,
      el("label", {}, [document.createTextNode("does"), type]),
    ]);
    fieldsOf(b).forEach(function (f) {
      var input = el("input", { value: b[f] || "", "data-path": path + "." + f, "aria-label": f, placeholder: f, oninput: function () { b[f] = input.value; changed(false); } });
      row.appendChild(el("label", {}, [document.createTextNode(f), input]));
    });
    row.appendChild(el("button", { type: "button", class: "remove", text: "Remove", onclick: onRemove }));
    row.appendChild(el("div", { class: "problem", "data-for": path }));
    if (isMenu) {
      var subs = el("div", { class: "subs" });
      b.sub_button.forEach(function (s, j) {
        subs.appendChild(buttonEditor(s, path + ".sub_button[" + j + "]", false, function () { b.sub_button.splice(j, 1); changed(true); }));
      });
      subs.appendChild(el("button", { type: "button", text: "Add a sub-button", disabled: b.sub_button.length >= LIMITS.subs, onclick: function () {
        b.sub_button.push({ name: "", type: "click", key: "" }); changed(true);
      } }));
      row.appendChild(subs);
    }
    return row;
  }

  function renderMenu() {
    var box = $("#menu-editor");
    box.textContent = "";
    menu.button.forEach(function (b, i) {
      box.appendChild(buttonEditor(b, "button[" + i + "]", true, function () { menu.button.splice(i, 1); changed(true); }));
    });
    $("#menu-add").disabled = menu.button.length >= LIMITS.buttons;
  }

  var validateTimer = null;
  function changed(structure) {
    if (structure) renderMenu();
    (window.wxedge = window.wxedge || []).push(["menu", "#menu-preview", JSON.parse(JSON.stringify(menu))]);
    clearTimeout(validateTimer);
    validateTimer = setTimeout(guard(validate), 250);
  }

  /** A menu problem in the console's language: the server's plain words, by their pattern (zh.js). */
  function trProblem(m) {
    if (lang !== "zh-CN") return m;
    var rules = window.WXEDGE_ZH_MENU || [];
    for (var i = 0; i < rules.length; i++) if (rules[i][0].test(m)) return m.replace(rules[i][0], rules[i][1]);
    return m;
  }

  async function validate() {
    var r = menu.button.length ? await api("/menu/validate", { method: "POST", body: menu }) : { ok: false, problems: [{ path: "button", message: "a menu needs at least one button" }] };
    document.querySelectorAll("[data-path]").forEach(function (f) { f.removeAttribute("aria-invalid"); });
    document.querySelectorAll(".problem").forEach(function (p) { p.textContent = ""; });
    var list = $("#menu-problems");
    list.textContent = "";
    r.problems.forEach(function (p) {
      p.message = trProblem(p.message);
      list.appendChild(el("li", { text: p.message }));
      var field = document.querySelector('[data-path="' + p.path + '"]');
      if (field) field.setAttribute("aria-invalid", "true");
      var owner = p.path.replace(/\.[a-z_]+$/, "");
      var slot = document.querySelector('.problem[data-for="' + owner + '"]');
      if (slot) slot.textContent = (slot.textContent ? slot.textContent + " " : "") + p.message;
    });
    $("#menu-publish").disabled = !r.ok;
    return r.ok;
  }

  async function loadMenu() {
    var current = await api("/menu");
    menu = current.menu ? { button: current.menu.button.map(clean) } : { button: [] };
    changed(true);
  }
  function clean(b) {
    var c = { name: b.name };
    ["type", "key", "url", "media_id", "article_id", "appid", "pagepath"].forEach(function (k) { if (b[k]) c[k] = b[k]; });
    if (b.sub_button && b.sub_button.length) c.sub_button = b.sub_button.map(clean);
    return c;
  }
  $("#menu-add").addEventListener("click", function () { menu.button.push({ name: "", type: "click", key: "" }); changed(true); });
  $("#menu-import").addEventListener("click", guard(async function () { await loadMenu(); notice("Imported the menu WeChat holds.", "ok"); }));
  $("#menu-import-console").addEventListener("click", guard(async function () {
    var c = await api("/menu/current");
    menu = { button: c.menu.button.map(clean) };
    changed(true);
    notice("Imported the menu from get_current_selfmenu_info" + (c.is_menu_open ? "." : " (the menu is switched off in the WeChat console)."), "ok");
  }));
  $("#menu-publish").addEventListener("click", guard(async function () {
    if (!(await validate())) { notice("The menu breaks WeChat's rules; see the problems listed."); return; }
    await api("/menu", { method: "PUT", body: menu });
    notice("Published. Followers see the new menu when they next open the chat (WeChat caches it up to 5 minutes).", "ok");
  }));

  // ---- auto-replies --------------------------------------------------------------------------

  var rules = {};
  var replyText = function (r) { return !r ? "" : r.type === "text" ? r.content : JSON.stringify(r); };
  function replyOf(text) {
    var t = text.trim();
    if (!t) return null;
    if (t.charAt(0) === "{") { try { return JSON.parse(t); } catch (e) { throw new Error("A reply starting with { must be JSON: " + e.message); } }
    return { type: "text", content: text };
  }
  function rowsOf(box, rows, make) {
    box.textContent = "";
    rows.forEach(function (r) { box.appendChild(make(r)); });
  }
  var sceneRow = function (r) { return el("div", { class: "row scene" }, [el("input", { value: r[0] || "", "aria-label": "Scene", placeholder: "pricing" }), el("textarea", { rows: 1, "aria-label": "Reply", text: replyText(r[1]) }), removeRow()]); };
  var clickRow = function (r) { return el("div", { class: "row click" }, [el("input", { value: r[0] || "", "aria-label": "Menu key", placeholder: "MENU_KEY" }), el("textarea", { rows: 1, "aria-label": "Reply", text: replyText(r[1]) }), removeRow()]); };
  function keywordRow(k) {
    var match = el("select", { "aria-label": "Match" });
    ["exact", "contains", "prefix"].forEach(function (m) { match.appendChild(el("option", { value: m, text: m, selected: k.match === m })); });
    return el("div", { class: "row keyword" }, [match, el("input", { value: k.pattern || "", "aria-label": "Pattern", placeholder: "help" }),
      el("textarea", { rows: 1, "aria-label": "Reply", text: replyText(k.reply) }), el("input", { type: "number", value: k.priority || 0, "aria-label": "Priority", class: "narrow" }), removeRow()]);
  }
  function removeRow() { return el("button", { type: "button", class: "remove", text: "Remove", onclick: function (e) { e.target.parentNode.remove(); } }); }

  async function loadRules() {
    rules = await api("/rules");
    $("#welcome-default").value = replyText(rules.welcome && rules.welcome.default);
    rowsOf($("#scenes"), Object.entries((rules.welcome && rules.welcome.scenes) || {}), sceneRow);
    rowsOf($("#keywords"), rules.keywords || [], keywordRow);
    rowsOf($("#clicks"), Object.entries(rules.clicks || {}), clickRow);
    $("#default-reply").value = replyText(rules.default);
  }
  $("#scene-add").addEventListener("click", function () { $("#scenes").appendChild(sceneRow([])); });
  $("#keyword-add").addEventListener("click", function () { $("#keywords").appendChild(keywordRow({ match: "exact" })); });
  $("#click-add").addEventListener("click", function () { $("#clicks").appendChild(clickRow([])); });
  $("#rules-form").addEventListener("submit", guard(async function (e) {
    e.preventDefault();
    var pairs = function (sel) {
      var o = {};
      document.querySelectorAll(sel).forEach(function (row) {
        var k = row.querySelector("input").value.trim(), r = replyOf(row.querySelector("textarea").value);
        if (k && r) o[k] = r;
      });
      return o;
    };
    var doc = {
      welcome: { default: replyOf($("#welcome-default").value), scenes: pairs("#scenes .row") },
      keywords: Array.prototype.map.call(document.querySelectorAll("#keywords .row"), function (row) {
        var f = row.querySelectorAll("input");
        return { match: row.querySelector("select").value, pattern: f[0].value, reply: replyOf(row.querySelector("textarea").value) || { type: "success" }, priority: Number(f[1].value) || 0 };
      }),
      clicks: pairs("#clicks .row"),
      default: replyOf($("#default-reply").value),
    };
    if (rules.forward) doc.forward = rules.forward;
    rules = await api("/rules", { method: "PUT", body: doc });
    notice("Saved. Replies use the new rules within 30 seconds.", "ok");
  }));
  $("#try-form").addEventListener("submit", guard(async function (e) {
    e.preventDefault();
    var kind = $("#try-kind").value, v = $("#try-value").value;
    var body = { kind: kind };
    body[{ text: "content", subscribe: "scene", scan: "scene", click: "key" }[kind]] = v;
    var r = await api("/rules/try", { method: "POST", body: body });
    $("#try-result").textContent = r.reply.type === "text" ? r.reply.content : r.reply.type === "success" ? tr("(no reply: success)") : JSON.stringify(r.reply, null, 1);
  }));

  // ---- charts: plain SVG -------------------------------------------------------------------

  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  /** Vertical bars, one group per label, one bar per series; every bar has a <title>. */
  function bars(box, labels, series, summary) {
    box.textContent = "";
    var W = 520, H = 200, pad = 28, n = labels.length || 1, k = series.length;
    var max = Math.max(1, ...series.flatMap(function (s) { return s.values; }));
    var g = svg("svg", { viewBox: "0 0 " + W + " " + (H + 40), role: "img", "aria-label": summary, class: "bars" });
    var slot = (W - pad) / n, bw = Math.max(2, (slot * 0.8) / k);
    g.appendChild(svg("text", { x: 0, y: 12, class: "axis" }, String(max)));
    g.appendChild(svg("line", { x1: pad, y1: H, x2: W, y2: H, class: "axis-line" }));
    labels.forEach(function (label, i) {
      series.forEach(function (s, j) {
        var v = s.values[i] || 0, h = (v / max) * (H - 20);
        var r = svg("rect", { x: pad + i * slot + j * bw, y: H - h, width: bw - 1, height: h, fill: s.color });
        r.appendChild(svg("title", {}, tr(label) + " · " + tr(s.name) + (lang === "zh-CN" ? "：" : ": ") + v));
        g.appendChild(r);
      });
      if (n <= 12 || i % Math.ceil(n / 10) === 0) g.appendChild(svg("text", { x: pad + i * slot, y: H + 14, class: "axis" }, label));
    });
    series.forEach(function (s, j) {
      g.appendChild(svg("rect", { x: pad + j * 140, y: H + 24, width: 10, height: 10, fill: s.color }));
      g.appendChild(svg("text", { x: pad + j * 140 + 14, y: H + 33, class: "axis" }, s.name));
    });
    box.appendChild(g);
  }

  function quotaChart(box, q) {
    bars(box, ["4 left", "3 left", "2 left", "1 left", "0 left"], [{ name: "followers", color: "#07c160", values: [q.left[4], q.left[3], q.left[2], q.left[1], q.left[0]] }],
      "Followers by mass messages left this month: " + q.left.slice().reverse().join(", "));
  }

  // ---- broadcasts ----------------------------------------------------------------------------

  var planned = null;
  function segment() {
    var aud = document.querySelector("input[name=aud]:checked").value;
    if (aud === "tag") return { kind: "tag", tag_id: Number($("#aud-tag").value) };
    if (aud === "scene") return { kind: "scene", scene: $("#aud-scene").value.trim() };
    if (aud === "page") return { kind: "page", page: $("#aud-page").value.trim() };
    if (aud === "open_ids") return { kind: "open_ids", openids: $("#aud-ids").value.split(/\s+/).filter(Boolean) };
    return { kind: "all" };
  }
  function describe(s) {
    if (lang === "zh-CN") return s.kind === "all" ? "全部粉丝" : s.kind === "tag" ? "标签 " + s.tag_id : s.kind === "open_ids" ? s.openids.length + " 个 OpenID" : (s.kind === "scene" ? "场景 " : "页面 ") + (s.scene || s.page);
    return s.kind === "all" ? "all followers" : s.kind === "tag" ? "tag " + s.tag_id : s.kind === "open_ids" ? s.openids.length + " OpenIDs" : s.kind + " " + (s.scene || s.page);
  }

  async function loadBroadcasts() {
    var tags = await api("/tags").catch(function (e) { notice(e.message); return { tags: [] }; });
    var sel = $("#aud-tag");
    sel.textContent = "";
    tags.tags.forEach(function (t) { sel.appendChild(el("option", { value: t.id, text: t.name + " (" + t.count + ")" })); });
    await refreshQuotaAndHistory();
  }

  async function refreshQuotaAndHistory() {
    var q = await api("/quota");
    quotaChart($("#quota-chart"), q);
    $("#quota-note").textContent = lang === "zh-CN"
      ? (q.account_kind === "subscription" ? (q.today_free ? "今天的群发次数还未使用。" : "今天的群发次数已用完，下次可用时间：" + q.next_free_at + "。")
        : q.followers + " 位粉丝；每月额度于 " + q.renews_at + " 重置。")
      : q.account_kind === "subscription"
      ? (q.today_free ? "Today's mass send is still free." : "Today's mass send is used; the next is free at " + q.next_free_at + ".")
      : q.followers + " followers; the monthly quota renews at " + q.renews_at + ".";
    var h = await api("/broadcasts");
    var body = $("#history tbody");
    body.textContent = "";
    h.broadcasts.forEach(function (b) {
      var out = b.batches.map(function (x) {
        return x.outcome ? (lang === "zh-CN" ? "已发送 " + x.outcome.sent + "，被过滤 " + x.outcome.filtered_out : x.outcome.sent + " sent, " + x.outcome.filtered_out + " filtered") : x.error || tr(x.state);
      }).join(lang === "zh-CN" ? "；" : "; ");
      body.appendChild(el("tr", {}, [el("td", { text: b.id }), el("td", { text: new Date(b.created_at * 1000).toLocaleString(lang) }), el("td", { text: describe(b.segment) }),
        el("td", { text: tr(b.method) + (b.batches.length > 1 ? " ×" + b.batches.length : "") }), el("td", { text: String(b.eligible) }), el("td", { text: b.status, class: "status-" + b.status }), el("td", { text: out })]));
    });
  }

  $("#plan-form").addEventListener("submit", guard(async function (e) {
    e.preventDefault();
    var s = segment();
    var p = await api("/broadcasts/plan", { method: "POST", body: { segment: s, exact: true } });
    var box = $("#plan");
    box.textContent = "";
    var dl = el("dl", { class: "plan" });
    var add = function (k, v) { if (v !== undefined && v !== null) { dl.appendChild(el("dt", { text: k })); dl.appendChild(el("dd", { text: String(v) })); } };
    var zh = lang === "zh-CN";
    add("Eligible", p.eligible);
    add("At quota (left out)", p.at_quota + (p.at_quota_until ? (zh ? "，至 " + p.at_quota_until : " until " + p.at_quota_until) : ""));
    add("Unknown OpenIDs", p.unknown);
    add("No longer following", p.not_following);
    add("Sent as", p.method ? tr(p.method) + (p.batches > 1 ? (zh ? "，分 " + p.batches + " 批" : " in " + p.batches + " batches") : "") : "—");
    if (p.today_free !== undefined) add("Today's send", p.today_free ? (zh ? "可用" : "free") : zh ? "已用，下次可用时间：" + p.next_free_at : "used; next free at " + p.next_free_at);
    box.appendChild(dl);
    if (p.refused) box.appendChild(el("p", { class: "refused", text: "Cannot send now: " + p.refused.message }));
    planned = p.refused ? null : { segment: s, plan: p, id: "c" + Date.now().toString(36) };
    $("#send").disabled = !planned;
  }));

  // A broadcast id names one message to one audience: editing the text after planning makes it
  // a new broadcast (the worker refuses a reused id with other content, 409).
  $("#msg-text").addEventListener("input", function () { if (planned) planned.id = "c" + Date.now().toString(36); });

  $("#send").addEventListener("click", function () {
    if (!planned) return;
    var text = $("#msg-text").value.trim();
    if (!text) { notice("Write the message first."); return; }
    $("#confirm-text").textContent = lang === "zh-CN"
      ? "发给 " + planned.plan.eligible + " 位粉丝（" + describe(planned.segment) + "），方式：" + tr(planned.plan.method) +
        "。每位粉丝本月的群发次数将减少一次" + (planned.plan.at_quota ? "；" + planned.plan.at_quota + " 位已达上限，不发送。" : "。")
      : "To " + planned.plan.eligible + " followers (" + describe(planned.segment) + ") as " + planned.plan.method +
      ". Each of them has one mass message fewer this month" + (planned.plan.at_quota ? "; " + planned.plan.at_quota + " at quota are left out." : ".");
    $("#confirm").showModal();
  });
  $("#confirm").addEventListener("close", guard(async function () {
    if ($("#confirm").returnValue !== "send" || !planned) return;
    var b = await api("/broadcasts", { method: "POST", body: { id: planned.id, segment: planned.segment, message: { type: "text", content: $("#msg-text").value } } });
    notice(lang === "zh-CN" ? "群发 " + b.id + "：" + tr(b.status) + "，共 " + b.eligible + " 位粉丝。" : "Broadcast " + b.id + ": " + b.status + " to " + b.eligible + " followers.", "ok");
    planned = null;
    $("#send").disabled = true;
    await refreshQuotaAndHistory();
  }));

  // ---- followers and statistics --------------------------------------------------------------

  async function loadFollowers() {
    var stats = await api("/stats?days=30");
    var days = Object.keys(stats).sort();
    var sum = function (o) { return Object.values(o || {}).reduce(function (a, b) { return a + b; }, 0); };
    bars($("#daily-chart"), days.map(function (d) { return d.slice(4, 6) + "-" + d.slice(6); }), [
      { name: "follows", color: "#07c160", values: days.map(function (d) { return sum(stats[d].follows); }) },
      { name: "unfollows", color: "#fa5151", values: days.map(function (d) { return sum(stats[d].unfollows); }) },
    ], "Follows and unfollows per day over the last 30 days");
    var totals = function (field) {
      var t = {};
      days.forEach(function (d) { Object.entries(stats[d][field] || {}).forEach(function (e) { t[e[0]] = (t[e[0]] || 0) + e[1]; }); });
      return t;
    };
    var byScene = totals("follows"), byPage = totals("pages");
    bars($("#scene-chart"), Object.keys(byScene), [{ name: "follows", color: "#10aeff", values: Object.values(byScene) }], "Follows by scene");
    bars($("#page-chart"), Object.keys(byPage), [{ name: "follows", color: "#6467f0", values: Object.values(byPage) }], "Follows by page");
    var funnel = await api("/funnel?days=30");
    var steps = [0, 0, 0, 0];
    Object.values(funnel).forEach(function (pages) { Object.values(pages).forEach(function (scenes) { Object.values(scenes).forEach(function (row) { row.forEach(function (v, i) { steps[i] += v; }); }); }); });
    bars($("#funnel-chart"), ["impressions", "QR shown", "scanned", "followed"], [{ name: "visitors", color: "#07c160", values: steps }],
      lang === "zh-CN" ? "漏斗：曝光 " + steps[0] + " 次，展示二维码 " + steps[1] + " 次，扫码 " + steps[2] + " 次，关注 " + steps[3] + " 次"
        : "Funnel: " + steps[0] + " impressions, " + steps[1] + " QR codes shown, " + steps[2] + " scans, " + steps[3] + " follows");
    quotaChart($("#quota-chart-2"), await api("/quota"));
    var logins = await api("/logins");
    var when = function (t) { return new Date(t * 1000).toLocaleString(lang); };
    $("#logins-note").textContent = !logins.enabled ? "Follow-to-log-in is off: set LOGIN_SECRET (docs/login.md)."
      : "The newest log-ins by a scan" + (logins.confirm ? ", each confirmed by the follower in the chat" : "") + ".";
    $("#login-sites tbody").replaceChildren.apply($("#login-sites tbody"), logins.sites.map(function (s) {
      return el("tr", {}, [el("td", { text: s.origin }), el("td", { text: String(s.logins) }), el("td", { text: String(s.new_followers) }), el("td", { text: when(s.last_at) })]);
    }));
    $("#login-recent tbody").replaceChildren.apply($("#login-recent tbody"), logins.logins.slice(0, 20).map(function (l) {
      return el("tr", {}, [el("td", { text: when(l.at) }), el("td", { text: l.origin }), el("td", { text: l.openid + (l.new_follower ? (lang === "zh-CN" ? "（新粉丝）" : " (new)") : "") }), el("td", { text: l.page })]);
    }));
  }

  /** One step of the import from its cursor; a step WeChat's end failed (502/503) is asked
   *  again, up to three times a second apart, rather than the import started over. */
  async function importStep() {
    for (var tries = 0; ; tries++) {
      try { return await api("/followers/import", { method: "POST", body: {} }); } catch (e) {
        if (tries >= 3 || (e.status !== 502 && e.status !== 503)) throw e;
        await new Promise(function (r) { setTimeout(r, 1000); });
      }
    }
  }

  $("#import").addEventListener("click", guard(async function () {
    var status = $("#import-status");
    var step = await api("/followers/import", { method: "POST", body: { restart: true } });
    while (!step.done) {
      status.textContent = lang === "zh-CN" ? (step.phase === "tags" ? "已导入粉丝（" + step.imported + "），正在导入标签…" : "已导入 " + step.imported + " / " + (step.total || "?") + "…")
        : step.phase === "tags" ? "Followers imported (" + step.imported + "); now the tags…" : "Imported " + step.imported + " of " + (step.total || "?") + "…";
      step = await importStep();
    }
    status.textContent = lang === "zh-CN" ? "完成：" + step.imported + " 位粉丝，" + (step.tags || 0) + " 个标签。" : "Done: " + step.imported + " followers and " + (step.tags || 0) + " tags.";
    await loadFollowers();
  }));

  $("#lookup-form").addEventListener("submit", guard(async function (e) {
    e.preventDefault();
    var r = await api("/followers/" + encodeURIComponent($("#lookup-id").value.trim()));
    $("#lookup-result").textContent = JSON.stringify(r, null, 1);
  }));

  // ---- embed ---------------------------------------------------------------------------------

  function renderEmbed() {
    var v = function (id) { return $("#" + id).value; };
    var attrs = [["src", location.origin + "/widget.js"], ["data-account", v("e-account")], ["data-prompt", v("e-prompt")], ["data-scene", v("e-scene")]];
    if (v("e-prompt") === "inline") attrs.push(["data-target", "#follow-card"]);
    if (v("e-mode") === "static") attrs.push(["data-mode", "static"]);
    if (v("e-lang")) attrs.push(["data-lang", v("e-lang")]);
    if (v("e-theme")) attrs.push(["data-theme", v("e-theme")]);
    var esc = function (s) { return String(s).replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;"); };
    var tag = "<script async " + attrs.map(function (a) { return a[0] + '="' + esc(a[1]) + '"'; }).join(" ") + "></" + "script>";
    var snippet = (v("e-prompt") === "inline" ? '<div id="follow-card"></div>\n' : "") + tag;
    $("#e-snippet").value = snippet;
    $("#e-preview").srcdoc = '<!doctype html><html lang="en"><body style="font:14px system-ui,sans-serif;margin:16px"><p>' + (lang === "zh-CN" ? "你的网页" : "Your page") + "</p>" + snippet + "</body></html>";
  }
  $("#embed-form").addEventListener("input", renderEmbed);
  $("#embed-form").addEventListener("change", renderEmbed);
  $("#e-copy").addEventListener("click", guard(async function () {
    await navigator.clipboard.writeText($("#e-snippet").value);
    $("#e-copied").textContent = "Copied.";
  }));

  if (token) enter();
})();
