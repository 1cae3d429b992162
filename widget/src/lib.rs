//! The follow widget: prompts (floating button, banner, inline card) that open an accessible
//! dialog with a QR code drawn here, in the visitor's browser, from the URL the worker hands
//! out; the dialog then follows the visit until the scan became a follow. Also a phone-like
//! preview of the account's menu. `loader.js` boots it with the embed's settings and replays
//! the `window.wxedge` queue into `command`.

mod html;
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
use ui::get_str;

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
    /// `follow` (default), `login` (the page gets a signed token: `wxedge:login`) or `unlock`
    /// (the `unlock` selector's elements are shown after the follow).
    intent: String,
    /// The page's nonce, carried into the log-in token.
    nonce: String,
    unlock: String,
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
        set(&mut self.intent, "intent");
        set(&mut self.nonce, "nonce");
        set(&mut self.unlock, "unlock");
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
    /// Where the code goes (`#qr`) and the visit's progress (`#status`).
    qr: Element,
    status: Element,
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
        let _ = w.navigator().send_beacon_with_opt_str(&[&c.api, "/api/events"].concat(), Some(&["{\"events\":", &body, "}"].concat()));
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
        if let Ok(e) = web_sys::CustomEvent::new_with_event_init_dict(&["wxedge:", event].concat(), &init) {
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
        // `["login", {nonce}]`: the dialog as a log-in (as `data-intent="login"`).
        "login" => {
            STATE.with(|s| {
                let mut s = s.borrow_mut();
                s.config.intent = "login".into();
                if let Some(n) = get_str(&args.get(1), "nonce") {
                    s.config.nonce = n;
                }
            });
            open(None)?
        }
        "close" => close(),
        // With a menu object, draws that one (the console's live preview of unpublished edits).
        "menu" if args.length() > 2 => menu_preview_of(&arg(1), &args.get(2))?,
        "menu" => menu_preview(&arg(1))?,
        "on" => {
            let f: js_sys::Function = args.get(2).dyn_into().map_err(|_| JsValue::from_str("wxedge on: the third item must be a function"))?;
            STATE.with(|s| s.borrow_mut().listeners.push((arg(1), f)));
        }
        other => web_sys::console::warn_1(&["wxedge: unknown command \"", other, "\""].concat().into()),
    }
    Ok(())
}

fn show_prompt(kind: &str, target: &str) -> Result<(), JsValue> {
    let c = config();
    let t = text();
    match kind {
        "floating" => shadow(&ui::body_host("floating", &c.theme)?)?.set_inner_html(&html::floating(&t)),
        "banner" => {
            if session_flag("wxedge-banner-dismissed") {
                return Ok(());
            }
            shadow(&ui::body_host("banner", &c.theme)?)?.set_inner_html(&html::banner(&t, &c.account));
        }
        "inline" => {
            let selector = if target.is_empty() { "[data-wxedge-inline]" } else { target };
            let host = find(selector, "the inline card")?;
            ui::set_theme(&host, &c.theme)?;
            shadow(&host)?.set_inner_html(&html::inline_card(&t, &c.account));
        }
        other => return Err(["wxedge: unknown prompt \"", other, "\" (floating, banner or inline)"].concat().into()),
    }
    beacon("impression");
    Ok(())
}

/// The page's element for `selector`, or an error that names what it was for.
fn find(selector: &str, what: &str) -> Result<Element, JsValue> {
    ui::document()?.query_selector(selector)?.ok_or_else(|| ["wxedge: no element matches \"", selector, "\" for ", what].concat().into())
}

/// Our shadow root on `host`; a new one gets the one click listener that serves every button in
/// it (`data-act`), so drawing the same card again never stacks listeners.
fn shadow(host: &Element) -> Result<ShadowRoot, JsValue> {
    let fresh = host.shadow_root().is_none();
    let root = ui::shadow(host)?;
    if fresh {
        let r = root.clone();
        ui::on(&root, "click", move |e| on_click(&r, &e))?;
    }
    Ok(root)
}

/// What a click in one of our roots does, by the `data-act` of the nearest element that has one.
fn on_click(root: &ShadowRoot, e: &web_sys::Event) {
    let Some(target) = e.target().map(|t| t.unchecked_into::<Element>()) else { return };
    let Some(el) = target.closest("[data-act]").ok().flatten() else { return };
    let act = el.get_attribute("data-act").unwrap_or_default();
    let result = match act.as_str() {
        "open" => open(Some(el.unchecked_into())),
        "close" => {
            close();
            Ok(())
        }
        // Only the backdrop itself: the dialog's own `data-act=""` stops clicks inside it.
        "backdrop" if el == target => {
            close();
            Ok(())
        }
        "dismiss" => {
            set_session_flag("wxedge-banner-dismissed");
            root.host().remove();
            Ok(())
        }
        "copy" => {
            if let Some(note) = root.get_element_by_id("copied") {
                copy_name(config().account, note);
            }
            Ok(())
        }
        "sub" => toggle_sub_menu(root, &el),
        "leaf" => show_toast(root, &el.get_attribute("data-does").unwrap_or_default()),
        _ => Ok(()),
    };
    if let Err(e) = result {
        web_sys::console::error_2(&"wxedge:".into(), &e);
    }
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
    let opener = opener.or_else(|| ui::document().ok().and_then(|d| d.active_element()).map(JsCast::unchecked_into));
    let c = config();
    let host = ui::body_host("dialog", &c.theme)?;
    let root = shadow(&host)?;
    root.set_inner_html(&html::dialog(&text(), &c.account, device()));
    let part = |id: &str| root.get_element_by_id(id).ok_or_else(|| JsValue::from_str(id));
    let d = Rc::new(Dialog { qr: part("qr")?, status: part("status")?, host });
    trap_focus(&root)?;
    let generation = STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.dialog = Some(d.clone());
        s.opener = opener;
        s.generation += 1;
        s.generation
    });
    if let Some(x) = root.query_selector("[data-act=close]")? {
        x.unchecked_into::<HtmlElement>().focus()?;
    }
    wasm_bindgen_futures::spawn_local(follow_visit(d, generation));
    emit("open", &JsValue::NULL);
    Ok(())
}

/// Tab and Shift+Tab cycle inside the dialog; Esc closes it.
fn trap_focus(root: &ShadowRoot) -> Result<(), JsValue> {
    let root = root.clone();
    ui::on(&root.clone(), "keydown", move |e| {
        let k = e.unchecked_ref::<web_sys::KeyboardEvent>();
        if k.key() == "Escape" {
            e.prevent_default();
            close();
            return;
        }
        if k.key() != "Tab" {
            return;
        }
        let Ok(list) = root.query_selector_all(".dialog button:not([hidden]),.dialog [href],.dialog [tabindex]:not([tabindex='-1'])") else { return };
        let (Some(first), Some(last)) = (list.item(0), list.length().checked_sub(1).and_then(|i| list.item(i))) else { return };
        let active = root.active_element();
        let at = |n: &web_sys::Node| active.as_ref().is_some_and(|a| a.unchecked_ref::<web_sys::Node>() == n);
        let focus = |n: web_sys::Node| {
            let _ = n.unchecked_into::<HtmlElement>().focus();
        };
        if k.shift_key() && (at(&first) || active.is_none()) {
            e.prevent_default();
            focus(last);
        } else if !k.shift_key() && at(&last) {
            e.prevent_default();
            focus(first);
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

/// Gets a code for this visit, draws it, and follows the visit until the scan became a follow:
/// pushed over the visit's WebSocket, or polled once a second when that cannot open.
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
                web_sys::console::error_2(&"wxedge: no QR code:".into(), &why);
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
                None => match ui::fetch_json("GET", &[&c.api, "/api/qr/", &visit].concat(), None).await {
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
                    match c.intent.as_str() {
                        "login" => log_in(&c, &d, &visit, generation).await,
                        "unlock" => unlock(&c.unlock),
                        _ => {}
                    }
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
    let markup = match dev {
        Device::Desktop => html::labelled_svg(&qr_svg(url)?, label),
        _ => html::code_image(&qr_png(url)?, label, QR_CSS_PX, (dev == Device::Phone).then(|| text().save()).as_deref()),
    };
    d.qr.set_inner_html(&markup);
    Some(())
}

/// The code's side on screen: WeChat recognises codes from about 200 CSS px.
const QR_CSS_PX: &str = "220";

/// The code as a PNG data URL, drawn on a canvas module by module (a 4-module quiet zone, 8
/// pixels a module, sharp at 2-3x device pixels) and encoded by the browser.
fn qr_png(url: &str) -> Option<String> {
    let (side, dark) = wxedge_core::qrsvg::qr_modules(url)?;
    let (scale, border) = (8u32, 4u32);
    let px = (side + 2 * border) * scale;
    let canvas: web_sys::HtmlCanvasElement = ui::document().ok()?.create_element("canvas").ok()?.unchecked_into();
    canvas.set_width(px);
    canvas.set_height(px);
    let ctx: web_sys::CanvasRenderingContext2d = canvas.get_context("2d").ok()??.unchecked_into();
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
        let url = [&api.replacen("http", "ws", 1), "/api/qr/", visit, "/live"].concat();
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

/// A log-in visit was scanned: asks for its token (from this page's origin, once) and hands it
/// to the page as `wxedge:login` `{token, new_follower}`.
async fn log_in(c: &Config, d: &Dialog, visit: &str, generation: u32) {
    let t = text();
    let body = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&body, &"visit".into(), &visit.into());
    let json = js_sys::JSON::stringify(&body).ok().and_then(|s| s.as_string()).unwrap_or_default();
    let url = [&c.api, "/api/login/token"].concat();
    // A log-in the follower must confirm in the chat answers 503 until they do (3 minutes).
    let mut answer = ui::fetch_json("POST", &url, Some(&json)).await;
    for _ in 0..180 {
        if !matches!(answer, Ok((503, _))) || !still_open(generation) {
            break;
        }
        d.status.set_text_content(Some(&t.confirm_in_wechat()));
        ui::sleep(1000).await;
        answer = ui::fetch_json("POST", &url, Some(&json)).await;
    }
    match answer {
        Ok((200, v)) if get_str(&v, "token").is_some() => {
            d.status.set_text_content(Some(&t.logged_in()));
            emit("login", &v);
        }
        Ok((status, v)) => {
            web_sys::console::error_1(&["wxedge: log-in refused (", &status_text(status), "): ", &get_str(&v, "message").unwrap_or_default()].concat().into());
            d.status.set_text_content(Some(&t.login_failed()));
            d.status.set_class_name("status");
        }
        Err(e) => {
            web_sys::console::error_2(&"wxedge: log-in failed:".into(), &e);
            d.status.set_text_content(Some(&t.login_failed()));
        }
    }
}

/// `data-intent="unlock"`: shows the page's `data-unlock` elements after the follow. A soft
/// gate (the content was in the page all along), not access control: docs/login.md.
fn unlock(selector: &str) {
    let Ok(doc) = ui::document() else { return };
    let selector = if selector.is_empty() { "[data-wxedge-unlock]" } else { selector };
    if let Ok(list) = doc.query_selector_all(selector) {
        for i in 0..list.length() {
            if let Some(el) = list.item(i).and_then(|n| n.dyn_into::<Element>().ok()) {
                let _ = el.remove_attribute("hidden");
                let _ = el.set_attribute("data-wxedge-unlocked", "");
            }
        }
    }
    emit("unlocked", &JsValue::from_str(selector));
}

/// The URL to draw and, in parametric mode, the visit to follow.
async fn acquire(c: &Config) -> Result<(String, Option<String>), JsValue> {
    if c.mode == "static" && !c.qr_url.is_empty() {
        return Ok((c.qr_url.clone(), None));
    }
    let body = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&body, &"page".into(), &c.page().into());
    let _ = js_sys::Reflect::set(&body, &"scene".into(), &c.scene().into());
    let _ = js_sys::Reflect::set(&body, &"static".into(), &JsValue::from_bool(c.mode == "static"));
    if c.intent == "login" {
        let _ = js_sys::Reflect::set(&body, &"intent".into(), &"login".into());
        if !c.nonce.is_empty() {
            let _ = js_sys::Reflect::set(&body, &"nonce".into(), &c.nonce.as_str().into());
        }
    }
    let json = js_sys::JSON::stringify(&body).ok().and_then(|s| s.as_string()).unwrap_or_default();
    match ui::fetch_json("POST", &[&c.api, "/api/qr"].concat(), Some(&json)).await {
        Ok((200, v)) => match get_str(&v, "url") {
            Some(url) => Ok((url, get_str(&v, "visit"))),
            None => Err("the worker answered without a URL".into()),
        },
        Ok((status, v)) if !c.qr_url.is_empty() => {
            web_sys::console::warn_1(
                &["wxedge: no parametric code (", &status_text(status), " ", &get_str(&v, "message").unwrap_or_default(), "); showing the static one"]
                    .concat()
                    .into(),
            );
            Ok((c.qr_url.clone(), None))
        }
        Ok((status, v)) => Err([&status_text(status), " ", &get_str(&v, "message").unwrap_or_default()].concat().into()),
        Err(e) => Err(e),
    }
}

/// An HTTP status as its three digits, without `core::fmt` (kept out of the wasm).
fn status_text(status: u16) -> String {
    [status / 100 % 10, status / 10 % 10, status % 10].iter().map(|&d| char::from(b'0' + d as u8)).collect()
}

/// Copies the account name (Clipboard API, else the old selection trick) and says so in `note`.
fn copy_name(account: String, note: Element) {
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

fn copy_by_selection(value: &str, near: &Element) -> Result<bool, JsValue> {
    let area: web_sys::HtmlTextAreaElement = ui::document()?.create_element("textarea")?.unchecked_into();
    area.set_value(value);
    area.set_attribute("readonly", "")?;
    near.append_child(&area)?;
    area.select();
    let ok = ui::document()?.unchecked_into::<web_sys::HtmlDocument>().exec_command("copy").unwrap_or(false);
    area.remove();
    Ok(ok)
}

/// Opens or closes the sub-menu after `top` (one open at a time).
fn toggle_sub_menu(root: &ShadowRoot, top: &Element) -> Result<(), JsValue> {
    let Some(list) = top.next_element_sibling() else { return Ok(()) };
    let opening = list.has_attribute("hidden");
    hide_sub_menus(root)?;
    list.toggle_attribute_with_force("hidden", !opening)?;
    top.set_attribute("aria-expanded", if opening { "true" } else { "false" })
}

fn hide_sub_menus(root: &ShadowRoot) -> Result<(), JsValue> {
    let subs = root.query_selector_all(".sub,[aria-expanded]")?;
    for n in (0..subs.length()).filter_map(|i| subs.item(i)) {
        let el = n.unchecked_into::<Element>();
        match el.has_attribute("aria-expanded") {
            true => el.set_attribute("aria-expanded", "false")?,
            false => el.toggle_attribute_with_force("hidden", true).map(drop)?,
        }
    }
    Ok(())
}

/// What tapping a leaf button does on a phone, shown as a toast.
fn show_toast(root: &ShadowRoot, what: &str) -> Result<(), JsValue> {
    hide_sub_menus(root)?;
    if let Some(toast) = root.query_selector(".toast")? {
        toast.set_text_content(Some(what));
        toast.remove_attribute("hidden")?;
    }
    Ok(())
}

/// The phone mock with a given menu (`{button: [...]}`), without asking the worker.
fn menu_preview_of(selector: &str, menu: &JsValue) -> Result<(), JsValue> {
    let root = phone_mock(selector)?;
    render_menu(&root, menu);
    Ok(())
}

/// The phone mock in the element matching `selector`, its menu not known yet.
fn phone_mock(selector: &str) -> Result<ShadowRoot, JsValue> {
    let host = find(selector, "the menu")?;
    let c = config();
    ui::set_theme(&host, &c.theme)?;
    let root = shadow(&host)?;
    root.set_inner_html(&html::phone(&text(), &c.account, None));
    Ok(root)
}

/// A phone-like mock of the account's menu in the element matching `selector`.
fn menu_preview(selector: &str) -> Result<(), JsValue> {
    let root = phone_mock(selector)?;
    let api = config().api;
    wasm_bindgen_futures::spawn_local(async move {
        let menu = match ui::fetch_json("GET", &[&api, "/api/menu"].concat(), None).await {
            Ok((200, v)) => js_sys::Reflect::get(&v, &"menu".into()).unwrap_or(JsValue::NULL),
            _ => JsValue::NULL,
        };
        render_menu(&root, &menu);
    });
    Ok(())
}

/// The buttons under `key` of a menu object (`button`, `sub_button`), as many as WeChat shows.
fn buttons_of(v: &JsValue, key: &str, max: usize) -> Vec<html::MenuButton> {
    let Some(list) = js_sys::Reflect::get(v, &key.into()).ok().filter(|a| a.is_array()) else { return Vec::new() };
    let t = text();
    js_sys::Array::from(&list)
        .iter()
        .take(max)
        .map(|b| {
            let does = match get_str(&b, "type").as_deref() {
                Some("view") => t.menu_opens(&get_str(&b, "url").unwrap_or_default()),
                Some("miniprogram") => t.menu_opens(&get_str(&b, "pagepath").unwrap_or_default()),
                _ => t.menu_sends(),
            };
            html::MenuButton { name: get_str(&b, "name").unwrap_or_default(), does, subs: buttons_of(&b, "sub_button", MAX_SUB_BUTTONS) }
        })
        .collect()
}

fn render_menu(root: &ShadowRoot, menu: &JsValue) {
    let top = if menu.is_object() { buttons_of(menu, "button", MAX_BUTTONS) } else { Vec::new() };
    root.set_inner_html(&html::phone(&text(), &config().account, Some(&top)));
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
    shadow(host)?.set_inner_html(&html::static_card(title, &svg));
    Ok(())
}
