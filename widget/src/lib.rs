//! The follow widget: prompts (floating button, banner, inline card) that open an accessible
//! dialog with a QR code drawn here, in the visitor's browser, from the URL the worker hands
//! out; the dialog then follows the visit until the scan became a follow. Also a phone-like
//! preview of the account's menu. `loader.js` boots it with the embed's settings and replays
//! the `window.wxedge` queue into `command`.

mod text;
mod ui;

#[cfg(target_arch = "wasm32")]
#[global_allocator]
// SAFETY: wasm32 without threads: the widget runs on the page's one thread.
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlElement, ShadowRoot};
use wxedge_core::api::menu::{MAX_BUTTONS, MAX_SUB_BUTTONS};
pub use wxedge_core::qrsvg::qr_svg;

pub use text::{Device, Lang, Text};
use ui::{button, el, get_str, on};

/// The embed's settings: `data-*` attributes of the script tag, or `["config", {...}]`.
#[derive(Debug, Clone, Default)]
struct Config {
    api: String,
    account: String,
    mode: String,
    qr_url: String,
    lang: String,
    theme: String,
    scene: String,
    page: String,
}

impl Config {
    fn merge(&mut self, v: &JsValue) {
        let set = |field: &mut String, key: &str| {
            if let Some(s) = get_str(v, key) {
                *field = s;
            }
        };
        set(&mut self.api, "api");
        set(&mut self.account, "account");
        set(&mut self.mode, "mode");
        set(&mut self.qr_url, "qrUrl");
        set(&mut self.lang, "lang");
        set(&mut self.theme, "theme");
        set(&mut self.scene, "scene");
        set(&mut self.page, "page");
    }

    fn page(&self) -> String {
        if !self.page.is_empty() {
            return self.page.clone();
        }
        web_sys::window().and_then(|w| w.location().pathname().ok()).unwrap_or_else(|| "/".into())
    }

    fn scene(&self) -> String {
        if !self.scene.is_empty() {
            return self.scene.clone();
        }
        let page = self.page();
        let label = page.trim_matches('/').replace('/', "-");
        if label.is_empty() {
            "home".into()
        } else {
            label
        }
    }
}

struct Dialog {
    host: Element,
    root: ShadowRoot,
    qr: HtmlElement,
    status: HtmlElement,
}

#[derive(Default)]
struct State {
    config: Config,
    dialog: Option<Rc<Dialog>>,
    /// Bumped on every open and close: a poll from an earlier opening stops by itself.
    generation: u32,
    opener: Option<HtmlElement>,
    listeners: Vec<(String, js_sys::Function)>,
    lang: Option<Lang>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn config() -> Config {
    STATE.with(|s| s.borrow().config.clone())
}

/// The language, worked out once per configuration (the page's and the browser's do not change).
fn text() -> Text {
    if let Some(lang) = STATE.with(|s| s.borrow().lang) {
        return Text { lang };
    }
    let configured = STATE.with(|s| s.borrow().config.lang.clone());
    let doc_lang = ui::document().ok().and_then(|d| d.document_element()).and_then(|e| e.get_attribute("lang"));
    let nav = web_sys::window().and_then(|w| w.navigator().language());
    let lang = Lang::choose(Some(configured.as_str()), doc_lang.as_deref(), nav.as_deref());
    STATE.with(|s| s.borrow_mut().lang = Some(lang));
    Text { lang }
}

fn device() -> Device {
    let ua = web_sys::window().and_then(|w| w.navigator().user_agent().ok()).unwrap_or_default();
    Device::from_user_agent(&ua)
}

/// Counts a funnel step (impression, QR shown); a beacon survives the visitor leaving.
fn beacon(step: &str) {
    // An opaque origin (a sandboxed frame such as the console's preview, a file): no page to
    // attribute, and the worker would refuse the origin anyway.
    if web_sys::window().and_then(|w| w.location().origin().ok()).is_none_or(|o| o == "null") {
        return;
    }
    let c = config();
    let body = js_sys::JSON::stringify(&js_sys::Array::of1(&{
        let o = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&o, &"step".into(), &step.into());
        let _ = js_sys::Reflect::set(&o, &"page".into(), &c.page().into());
        let _ = js_sys::Reflect::set(&o, &"scene".into(), &c.scene().into());
        o.into()
    }))
    .ok()
    .and_then(|s| s.as_string())
    .unwrap_or_default();
    if let Some(w) = web_sys::window() {
        let _ = w.navigator().send_beacon_with_opt_str(&format!("{}/api/events", c.api), Some(&format!("{{\"events\":{body}}}")));
    }
}

fn emit(event: &str, detail: &JsValue) {
    let listeners: Vec<js_sys::Function> = STATE.with(|s| s.borrow().listeners.iter().filter(|(n, _)| n == event).map(|(_, f)| f.clone()).collect());
    for f in listeners {
        let _ = f.call1(&JsValue::NULL, detail);
    }
    if let Some(w) = web_sys::window() {
        let init = web_sys::CustomEventInit::new();
        init.set_detail(detail);
        if let Ok(e) = web_sys::CustomEvent::new_with_event_init_dict(&format!("wxedge:{event}"), &init) {
            let _ = w.dispatch_event(&e);
        }
    }
}

/// Starts the widget with the script tag's settings.
#[wasm_bindgen]
pub fn boot(settings: JsValue) -> Result<(), JsValue> {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.config.merge(&settings);
        s.lang = None;
    });
    let prompt = get_str(&settings, "prompt").unwrap_or_default();
    let target = get_str(&settings, "target").unwrap_or_default();
    if !prompt.is_empty() && prompt != "none" {
        show_prompt(&prompt, &target)?;
    }
    if let Some(sel) = get_str(&settings, "menu").filter(|s| !s.is_empty()) {
        menu_preview(&sel)?;
    }
    Ok(())
}

/// One queued call: `["config", {...}]`, `["prompt", "floating" | "banner" | "inline", "#sel"]`,
/// `["open"]`, `["close"]`, `["menu", "#sel"]`, `["on", "followed" | "scanned", fn]`.
#[wasm_bindgen]
pub fn command(args: js_sys::Array) -> Result<(), JsValue> {
    let name = args.get(0).as_string().unwrap_or_default();
    let arg = |i: u32| args.get(i).as_string().unwrap_or_default();
    match name.as_str() {
        "config" => STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.config.merge(&args.get(1));
            s.lang = None;
        }),
        "prompt" => show_prompt(&arg(1), &arg(2))?,
        "open" => open(None)?,
        "close" => close(),
        // With a menu object, draws that one (the console's live preview of unpublished edits).
        "menu" if args.length() > 2 => menu_preview_of(&arg(1), &args.get(2))?,
        "menu" => menu_preview(&arg(1))?,
        "on" => {
            let f: js_sys::Function = args.get(2).dyn_into().map_err(|_| JsValue::from_str("wxedge on: the third item must be a function"))?;
            STATE.with(|s| s.borrow_mut().listeners.push((arg(1), f)));
        }
        other => web_sys::console::warn_1(&format!("wxedge: unknown command {other:?}").into()),
    }
    Ok(())
}

fn show_prompt(kind: &str, target: &str) -> Result<(), JsValue> {
    let c = config();
    let t = text();
    match kind {
        "floating" => {
            let host = ui::body_host("floating", &c.theme)?;
            let root = ui::shadow(&host)?;
            let b = button("floating primary", &t.button())?;
            b.set_attribute("aria-haspopup", "dialog")?;
            opens_dialog(&b)?;
            root.append_child(&b)?;
        }
        "banner" => {
            if session_flag("wxedge-banner-dismissed") {
                return Ok(());
            }
            let host = ui::body_host("banner", &c.theme)?;
            let root = ui::shadow(&host)?;
            let bar = el("div", "banner", None)?;
            bar.set_attribute("role", "region")?;
            bar.set_attribute("aria-label", &t.title(&c.account))?;
            bar.append_child(&el("span", "", Some(&t.banner()))?.into())?;
            let b = button("primary", &t.button())?;
            b.set_attribute("aria-haspopup", "dialog")?;
            opens_dialog(&b)?;
            bar.append_child(&b)?;
            let dismiss = button("dismiss", "×")?;
            dismiss.set_attribute("aria-label", &t.close())?;
            let h = host.clone();
            on(&dismiss, "click", move |_| {
                set_session_flag("wxedge-banner-dismissed");
                h.remove();
            })?;
            bar.append_child(&dismiss)?;
            root.append_child(&bar)?;
        }
        "inline" => {
            let host = ui::document()?
                .query_selector(if target.is_empty() { "[data-wxedge-inline]" } else { target })?
                .ok_or_else(|| JsValue::from_str(&format!("wxedge: no element matches {target:?} for the inline card")))?;
            ui::set_theme(&host, &c.theme)?;
            let root = ui::shadow(&host)?;
            root.set_inner_html("");
            let card = el("div", "card", None)?;
            card.append_child(&el("span", "", Some(&t.title(&c.account)))?.into())?;
            let b = button("primary", &t.button())?;
            b.set_attribute("aria-haspopup", "dialog")?;
            opens_dialog(&b)?;
            card.append_child(&b)?;
            root.append_child(&card)?;
        }
        other => return Err(format!("wxedge: unknown prompt {other:?} (floating, banner or inline)").into()),
    }
    beacon("impression");
    Ok(())
}

fn opens_dialog(b: &HtmlElement) -> Result<(), JsValue> {
    let me = b.clone();
    on(b, "click", move |_| {
        if let Err(e) = open(Some(me.clone())) {
            web_sys::console::error_2(&"wxedge:".into(), &e);
        }
    })
}

fn session_flag(name: &str) -> bool {
    web_sys::window().and_then(|w| w.session_storage().ok().flatten()).and_then(|s| s.get_item(name).ok().flatten()).is_some()
}

fn set_session_flag(name: &str) {
    if let Some(s) = web_sys::window().and_then(|w| w.session_storage().ok().flatten()) {
        let _ = s.set_item(name, "1");
    }
}

/// Opens the follow dialog; `opener` gets the focus back when it closes.
fn open(opener: Option<HtmlElement>) -> Result<(), JsValue> {
    if STATE.with(|s| s.borrow().dialog.is_some()) {
        return Ok(());
    }
    let opener = opener.or_else(|| ui::document().ok().and_then(|d| d.active_element()).and_then(|e| e.dyn_into().ok()));
    let c = config();
    let t = text();
    let dev = device();
    let host = ui::body_host("dialog", &c.theme)?;
    let root = ui::shadow(&host)?;
    let backdrop = el("div", "backdrop", None)?;
    let dialog = el("div", "dialog", None)?;
    dialog.set_attribute("role", "dialog")?;
    dialog.set_attribute("aria-modal", "true")?;
    dialog.set_attribute("aria-labelledby", "wxedge-title")?;
    dialog.set_attribute("aria-describedby", "wxedge-hint")?;
    let x = button("x", "×")?;
    x.set_attribute("aria-label", &t.close())?;
    on(&x, "click", |_| close())?;
    let title = el("h2", "", Some(&t.title(&c.account)))?;
    title.set_id("wxedge-title");
    let qr = el("div", "qr", Some(&t.loading()))?;
    let hint = el("p", "hint", Some(&t.hint(dev)))?;
    hint.set_id("wxedge-hint");
    let status = el("p", "status", None)?;
    status.set_attribute("aria-live", "polite")?;
    status.set_attribute("role", "status")?;
    dialog.append_child(&x)?;
    dialog.append_child(&title)?;
    dialog.append_child(&qr)?;
    dialog.append_child(&hint)?;
    // On a phone outside WeChat the code cannot be scanned by the phone showing it: offer the
    // account name to search for. Inside WeChat a long press follows, no copying needed.
    if dev == Device::Phone && !c.account.is_empty() {
        let copy = button("", &t.copy())?;
        let copied = el("p", "hint", None)?;
        copied.set_attribute("aria-live", "polite")?;
        let (account, note) = (c.account.clone(), copied.clone());
        on(&copy, "click", move |_| copy_name(account.clone(), note.clone()))?;
        dialog.append_child(&copy)?;
        dialog.append_child(&copied)?;
    }
    dialog.append_child(&status)?;
    backdrop.append_child(&dialog)?;
    root.append_child(&backdrop)?;
    let d = Rc::new(Dialog { host, root, qr, status });
    trap_focus(&d, &dialog)?;
    on(&backdrop, "click", {
        let b = backdrop.clone();
        move |e| {
            let on_backdrop = e.target().and_then(|t| t.dyn_into::<Element>().ok()).is_some_and(|t| &t == b.unchecked_ref::<Element>());
            if on_backdrop {
                close();
            }
        }
    })?;
    let generation = STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.dialog = Some(d.clone());
        s.opener = opener;
        s.generation += 1;
        s.generation
    });
    x.focus()?;
    wasm_bindgen_futures::spawn_local(follow_visit(d, generation));
    emit("open", &JsValue::NULL);
    Ok(())
}

/// Tab and Shift+Tab cycle inside the dialog; Esc closes it.
fn trap_focus(d: &Rc<Dialog>, dialog: &HtmlElement) -> Result<(), JsValue> {
    let (root, container) = (d.root.clone(), dialog.clone());
    on(dialog, "keydown", move |e| {
        let Some(k) = e.dyn_ref::<web_sys::KeyboardEvent>() else { return };
        if k.key() == "Escape" {
            e.prevent_default();
            close();
            return;
        }
        if k.key() != "Tab" {
            return;
        }
        let Ok(list) = container.query_selector_all("button:not([hidden]),[href],[tabindex]:not([tabindex='-1'])") else { return };
        let items: Vec<HtmlElement> = (0..list.length()).filter_map(|i| list.item(i)).filter_map(|n| n.dyn_into().ok()).collect();
        let (Some(first), Some(last)) = (items.first(), items.last()) else { return };
        let active = root.active_element();
        let at = |el: &HtmlElement| active.as_ref().is_some_and(|a| a == el.unchecked_ref::<Element>());
        if k.shift_key() && (at(first) || active.is_none()) {
            e.prevent_default();
            let _ = last.focus();
        } else if !k.shift_key() && at(last) {
            e.prevent_default();
            let _ = first.focus();
        }
    })
}

fn close() {
    let (dialog, opener) = STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.generation += 1;
        (s.dialog.take(), s.opener.take())
    });
    if let Some(d) = dialog {
        d.host.remove();
        if let Some(o) = opener {
            let _ = o.focus();
        }
        emit("close", &JsValue::NULL);
    }
}

fn still_open(generation: u32) -> bool {
    STATE.with(|s| s.borrow().generation == generation)
}

/// Gets a code for this visit, draws it, and polls its state until the scan became a follow
/// (the worker's callback marks it in a Durable Object; a poll every second sees it).
async fn follow_visit(d: Rc<Dialog>, generation: u32) {
    let c = config();
    let t = text();
    let mut renewed = false;
    loop {
        let code = acquire(&c).await;
        if !still_open(generation) {
            return;
        }
        let (url, visit) = match code {
            Ok(v) => v,
            Err(why) => {
                web_sys::console::error_1(&format!("wxedge: {why}").into());
                d.qr.set_text_content(Some(&t.failed()));
                return;
            }
        };
        if draw_code(&d, &url, &t.title(&c.account)).is_none() {
            d.qr.set_text_content(Some(&t.failed()));
            return;
        }
        beacon("qr_shown");
        let detail = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&detail, &"url".into(), &url.as_str().into());
        let _ = js_sys::Reflect::set(&detail, &"visit".into(), &visit.as_deref().map(JsValue::from_str).unwrap_or(JsValue::NULL));
        emit("qr", &detail);
        d.status.set_text_content(Some(&if renewed { t.renewed() } else { t.waiting() }));
        // A static code: nothing to follow.
        let Some(visit) = visit else { return };
        // The follow is pushed over the visit's WebSocket; polling once a second is the fallback
        // when it cannot open or breaks (a proxy, an old browser).
        let live = Live::open(&c.api, &visit);
        let mut tick = 0u32;
        loop {
            ui::sleep(1000).await;
            if !still_open(generation) {
                return;
            }
            tick += 1;
            let state = match live.as_ref().filter(|l| !l.broken.get()) {
                Some(l) => {
                    // Keeps the code's lease while the dialog stays open, as a poll does.
                    if tick % 30 == 0 {
                        let _ = l.ws.send_with_str(wxedge_core::visits::LIVE_PING);
                    }
                    match l.state.borrow().clone() {
                        Some(s) => s,
                        None => continue,
                    }
                }
                None => match ui::fetch_json("GET", &format!("{}/api/qr/{visit}", c.api), None).await {
                    Ok((200, v)) => get_str(&v, "state").unwrap_or_default(),
                    Ok((404, _)) => "expired".into(),
                    _ => continue, // a network blip: keep polling
                },
            };
            match state.as_str() {
                "followed" | "scanned" => {
                    let done = if state == "followed" { t.followed() } else { t.scanned() };
                    d.status.set_text_content(Some(&done));
                    d.status.set_class_name("status done");
                    emit(&state, &JsValue::from_str(&visit));
                    return;
                }
                "expired" => break,
                _ => {}
            }
        }
        renewed = true;
    }
}

/// Draws the code into the dialog: inline SVG on a desktop; on phones and in WeChat's browser a
/// PNG `<img>` (WeChat's long press recognises only `<img>` codes; outside WeChat the visitor
/// saves the image and picks it in WeChat → Scan → Album), with a save link on phones.
fn draw_code(d: &Dialog, url: &str, label: &str) -> Option<()> {
    let dev = device();
    if dev == Device::Desktop {
        d.qr.set_inner_html(&qr_svg(url)?);
        d.qr.first_element_child()?.set_attribute("aria-label", label).ok()?;
        return Some(());
    }
    let png = qr_png(url)?;
    let doc = web_sys::window()?.document()?;
    let img: web_sys::HtmlImageElement = doc.create_element("img").ok()?.dyn_into().ok()?;
    img.set_src(&png);
    img.set_alt(label);
    img.set_width(QR_CSS_PX);
    img.set_height(QR_CSS_PX);
    d.qr.set_text_content(None);
    d.qr.append_child(&img).ok()?;
    if dev == Device::Phone {
        let save: web_sys::HtmlAnchorElement = doc.create_element("a").ok()?.dyn_into().ok()?;
        save.set_href(&png);
        save.set_download("wechat-follow-code.png");
        save.set_class_name("save");
        save.set_text_content(Some(&text().save()));
        d.qr.append_child(&save).ok()?;
    }
    Some(())
}

/// The code's side on screen: WeChat recognises codes from about 200 CSS px.
const QR_CSS_PX: u32 = 220;

/// The code as a PNG data URL, drawn on a canvas module by module (a 4-module quiet zone, 8
/// pixels a module, sharp at 2-3x device pixels) and encoded by the browser.
fn qr_png(url: &str) -> Option<String> {
    let (side, dark) = wxedge_core::qrsvg::qr_modules(url)?;
    let (scale, border) = (8u32, 4u32);
    let px = (side + 2 * border) * scale;
    let canvas: web_sys::HtmlCanvasElement = web_sys::window()?.document()?.create_element("canvas").ok()?.dyn_into().ok()?;
    canvas.set_width(px);
    canvas.set_height(px);
    let ctx: web_sys::CanvasRenderingContext2d = canvas.get_context("2d").ok()??.dyn_into().ok()?;
    ctx.set_fill_style_str("#fff");
    ctx.fill_rect(0.0, 0.0, f64::from(px), f64::from(px));
    ctx.set_fill_style_str("#000");
    for (i, _) in dark.iter().enumerate().filter(|(_, d)| **d) {
        let (x, y) = (i as u32 % side + border, i as u32 / side + border);
        ctx.fill_rect(f64::from(x * scale), f64::from(y * scale), f64::from(scale), f64::from(scale));
    }
    canvas.to_data_url().ok()
}

/// A dialog's WebSocket to its visit's shard (`/api/qr/{visit}/live`): the latest state pushed,
/// and whether it broke (then the dialog polls). Closed when the dialog's wait ends.
struct Live {
    ws: web_sys::WebSocket,
    state: Rc<RefCell<Option<String>>>,
    broken: Rc<std::cell::Cell<bool>>,
}

impl Live {
    fn open(api: &str, visit: &str) -> Option<Live> {
        let url = format!("{}/api/qr/{visit}/live", api.replacen("http", "ws", 1));
        let ws = web_sys::WebSocket::new(&url).ok()?;
        let live = Live { ws, state: Rc::default(), broken: Rc::default() };
        let state = live.state.clone();
        ui::on(live.ws.unchecked_ref(), "message", move |e| {
            let text = e.unchecked_into::<web_sys::MessageEvent>().data().as_string().unwrap_or_default();
            if let Some(s) = js_sys::JSON::parse(&text).ok().and_then(|v| get_str(&v, "state")) {
                *state.borrow_mut() = Some(s);
            }
        })
        .ok()?;
        for kind in ["close", "error"] {
            let broken = live.broken.clone();
            ui::on(live.ws.unchecked_ref(), kind, move |_| broken.set(true)).ok()?;
        }
        Some(live)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.ws.close();
    }
}

/// The URL to draw and, in parametric mode, the visit to follow.
async fn acquire(c: &Config) -> Result<(String, Option<String>), String> {
    if c.mode == "static" && !c.qr_url.is_empty() {
        return Ok((c.qr_url.clone(), None));
    }
    let body = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&body, &"page".into(), &c.page().into());
    let _ = js_sys::Reflect::set(&body, &"scene".into(), &c.scene().into());
    let _ = js_sys::Reflect::set(&body, &"static".into(), &JsValue::from_bool(c.mode == "static"));
    let json = js_sys::JSON::stringify(&body).ok().and_then(|s| s.as_string()).unwrap_or_default();
    match ui::fetch_json("POST", &format!("{}/api/qr", c.api), Some(&json)).await {
        Ok((200, v)) => match get_str(&v, "url") {
            Some(url) => Ok((url, get_str(&v, "visit"))),
            None => Err("the worker answered without a URL".into()),
        },
        Ok((status, v)) if !c.qr_url.is_empty() => {
            web_sys::console::warn_1(
                &format!("wxedge: no parametric code ({status} {}); showing the static one", get_str(&v, "message").unwrap_or_default()).into(),
            );
            Ok((c.qr_url.clone(), None))
        }
        Ok((status, v)) => Err(format!("no QR code: {status} {}", get_str(&v, "message").unwrap_or_default())),
        Err(e) => Err(format!("no QR code: {e:?}")),
    }
}

/// Copies the account name (Clipboard API, else the old selection trick) and says so.
fn copy_name(account: String, note: HtmlElement) {
    wasm_bindgen_futures::spawn_local(async move {
        let t = text();
        let via_api = match web_sys::window().map(|w| w.navigator().clipboard()) {
            Some(cb) => wasm_bindgen_futures::JsFuture::from(cb.write_text(&account)).await.is_ok(),
            None => false,
        };
        let ok = via_api || copy_by_selection(&account, &note).unwrap_or(false);
        note.set_text_content(Some(&if ok { t.copied(&account) } else { t.copy_failed(&account) }));
    });
}

fn copy_by_selection(value: &str, near: &HtmlElement) -> Result<bool, JsValue> {
    let area: web_sys::HtmlTextAreaElement = ui::document()?.create_element("textarea")?.dyn_into()?;
    area.set_value(value);
    area.set_attribute("readonly", "")?;
    near.append_child(&area)?;
    area.select();
    let doc: web_sys::HtmlDocument = ui::document()?.dyn_into()?;
    let ok = doc.exec_command("copy").unwrap_or(false);
    area.remove();
    Ok(ok)
}

/// The phone mock with a given menu (`{button: [...]}`), without asking the worker.
fn menu_preview_of(selector: &str, menu: &JsValue) -> Result<(), JsValue> {
    let (phone, chat) = phone_mock(selector)?;
    render_menu(&phone, &chat, menu)
}

fn phone_mock(selector: &str) -> Result<(HtmlElement, HtmlElement), JsValue> {
    let host = ui::document()?.query_selector(selector)?.ok_or_else(|| JsValue::from_str(&format!("wxedge: no element matches {selector:?} for the menu")))?;
    let c = config();
    ui::set_theme(&host, &c.theme)?;
    let root = ui::shadow(&host)?;
    root.set_inner_html("");
    let phone = el("div", "phone", None)?;
    phone.set_attribute("role", "group")?;
    phone.set_attribute("aria-label", &text().menu_label())?;
    let chat = el("div", "chat", Some(&c.account))?;
    phone.append_child(&chat)?;
    root.append_child(&phone)?;
    Ok((phone, chat))
}

/// A phone-like mock of the account's menu in the element matching `selector`.
fn menu_preview(selector: &str) -> Result<(), JsValue> {
    let (phone, chat) = phone_mock(selector)?;
    let api = config().api;
    wasm_bindgen_futures::spawn_local(async move {
        let menu = match ui::fetch_json("GET", &format!("{api}/api/menu"), None).await {
            Ok((200, v)) => js_sys::Reflect::get(&v, &"menu".into()).unwrap_or(JsValue::NULL),
            _ => JsValue::NULL,
        };
        if let Err(e) = render_menu(&phone, &chat, &menu) {
            web_sys::console::error_2(&"wxedge: menu preview:".into(), &e);
        }
    });
    Ok(())
}

fn buttons_of(v: &JsValue, key: &str, max: usize) -> Vec<JsValue> {
    js_sys::Reflect::get(v, &key.into()).ok().filter(|a| a.is_array()).map(|a| js_sys::Array::from(&a).iter().take(max).collect()).unwrap_or_default()
}

fn render_menu(phone: &HtmlElement, chat: &HtmlElement, menu: &JsValue) -> Result<(), JsValue> {
    let top = if menu.is_null() || menu.is_undefined() { Vec::new() } else { buttons_of(menu, "button", MAX_BUTTONS) };
    if top.is_empty() {
        chat.set_text_content(Some(&text().no_menu()));
        return Ok(());
    }
    let bar = el("div", "bar", None)?;
    let toast = el("div", "toast", None)?;
    toast.set_hidden(true);
    toast.set_attribute("aria-live", "polite")?;
    let subs_all: Rc<RefCell<Vec<HtmlElement>>> = Rc::default();
    for b in top {
        let cell = el("div", "", None)?;
        let name = get_str(&b, "name").unwrap_or_default();
        let subs = buttons_of(&b, "sub_button", MAX_SUB_BUTTONS);
        let top_button = button("", &if subs.is_empty() { name.clone() } else { format!("≡ {name}") })?;
        cell.append_child(&top_button)?;
        if subs.is_empty() {
            leaf_action(&top_button, &b, &toast, &subs_all)?;
        } else {
            let list = el("div", "sub", None)?;
            list.set_hidden(true);
            for s in &subs {
                let sb = button("", &get_str(s, "name").unwrap_or_default())?;
                leaf_action(&sb, s, &toast, &subs_all)?;
                list.append_child(&sb)?;
            }
            top_button.set_attribute("aria-expanded", "false")?;
            let (l, all, tb) = (list.clone(), subs_all.clone(), top_button.clone());
            on(&top_button, "click", move |_| {
                let opening = l.hidden();
                for other in all.borrow().iter() {
                    other.set_hidden(true);
                }
                l.set_hidden(!opening);
                let _ = tb.set_attribute("aria-expanded", if opening { "true" } else { "false" });
            })?;
            subs_all.borrow_mut().push(list.clone());
            cell.append_child(&list)?;
        }
        bar.append_child(&cell)?;
    }
    phone.append_child(&toast)?;
    phone.append_child(&bar)?;
    Ok(())
}

/// What tapping a leaf button does on a phone, shown as a toast.
fn leaf_action(b: &HtmlElement, spec: &JsValue, toast: &HtmlElement, subs: &Rc<RefCell<Vec<HtmlElement>>>) -> Result<(), JsValue> {
    let t = text();
    let what = match get_str(spec, "type").as_deref() {
        Some("view") => t.menu_opens(&get_str(spec, "url").unwrap_or_default()),
        Some("miniprogram") => t.menu_opens(&get_str(spec, "pagepath").unwrap_or_default()),
        _ => t.menu_sends(),
    };
    let (toast, subs) = (toast.clone(), subs.clone());
    on(b, "click", move |_| {
        for s in subs.borrow().iter() {
            s.set_hidden(true);
        }
        toast.set_text_content(Some(&what));
        toast.set_hidden(false);
    })
}

/// The QR code for `text` as SVG: what the widget draws, exported for `make bench` (and for pages
/// that want the image alone).
#[wasm_bindgen(js_name = svgOf)]
pub fn svg_of(text: &str) -> Option<String> {
    qr_svg(text)
}

/// A static follow card with a QR code for `url` (`<div data-wxedge-qr="URL">`): no dialog, no
/// visit; for pages that show the account's ordinary code.
#[wasm_bindgen]
pub fn mount(host: &Element, url: &str, title: &str) -> Result<(), JsValue> {
    let svg = qr_svg(url).ok_or_else(|| JsValue::from_str("text too long for a QR code"))?;
    let root = ui::shadow(host)?;
    root.set_inner_html("");
    let card = el("div", "card", None)?;
    let col = el("div", "", None)?;
    col.append_child(&el("div", "", Some(title))?.into())?;
    let qr = el("div", "qr", None)?;
    qr.set_inner_html(&svg);
    if let Some(svg_el) = qr.first_element_child() {
        svg_el.set_attribute("aria-label", title)?;
    }
    col.append_child(&qr)?;
    card.append_child(&col)?;
    root.append_child(&card)?;
    Ok(())
}
