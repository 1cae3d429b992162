//! DOM building blocks: shadow roots with our one stylesheet, listeners, and small async
//! helpers (fetch, sleep); the markup itself is `html.rs`. Everything the widget shows lives in a shadow root, so the host page's CSS
//! cannot reach in and ours cannot leak out.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Document, Element, ShadowRoot};

/// Constructable stylesheets are not subject to the host page's `style-src` CSP, unlike a
/// `<style>` element. Light by default; dark by the visitor's preference or `data-theme=dark`.
pub const STYLE: &str = r#"
:host{all:initial;--bg:#fff;--fg:#191919;--muted:#666;--line:#e5e5e5;--accent:#07c160;--accent-fg:#fff;--shadow:0 8px 32px #0003;font:14px/1.45 system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;color:var(--fg)}
:host([data-theme=dark]){--bg:#1f1f1f;--fg:#f0f0f0;--muted:#aaa;--line:#3a3a3a;--shadow:0 8px 32px #000a}
@media (prefers-color-scheme:dark){:host(:not([data-theme=light])){--bg:#1f1f1f;--fg:#f0f0f0;--muted:#aaa;--line:#3a3a3a;--shadow:0 8px 32px #000a}}
*{box-sizing:border-box}
button{font:inherit;cursor:pointer;border-radius:8px;border:1px solid var(--line);background:var(--bg);color:var(--fg);padding:8px 14px}
button:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
button.primary{background:var(--accent);border-color:var(--accent);color:var(--accent-fg);font-weight:600}
.floating{position:fixed;right:20px;bottom:20px;z-index:2147483000;box-shadow:var(--shadow);border-radius:999px;padding:12px 18px}
.banner{position:fixed;left:0;right:0;bottom:0;z-index:2147483000;display:flex;gap:12px;align-items:center;justify-content:center;flex-wrap:wrap;padding:10px 16px;background:var(--bg);border-top:1px solid var(--line);box-shadow:var(--shadow)}
.banner .dismiss{border:none;background:none;color:var(--muted);padding:4px 8px}
.card{display:flex;gap:12px;align-items:center;justify-content:space-between;flex-wrap:wrap;border:1px solid var(--line);border-radius:12px;padding:14px 16px;background:var(--bg);max-width:420px}
.backdrop{position:fixed;inset:0;z-index:2147483001;background:#0008;display:flex;align-items:center;justify-content:center;padding:16px}
.dialog{background:var(--bg);color:var(--fg);border-radius:16px;box-shadow:var(--shadow);width:min(340px,100%);padding:20px;text-align:center;position:relative}
.dialog h2{font-size:17px;margin:4px 28px 12px}
.dialog .x{position:absolute;top:10px;right:10px;border:none;background:none;font-size:20px;line-height:1;padding:6px 10px;color:var(--muted)}
.qr{margin:0 auto;min-width:200px;min-height:200px;display:flex;flex-direction:column;align-items:center;justify-content:center;color:var(--muted)}
.qr svg{width:200px;height:200px;display:block;border-radius:8px}.qr img{width:220px;height:220px;display:block;margin:0 auto;image-rendering:pixelated}.qr .save{display:block;margin-top:6px;color:#07c160;font-size:14px}
.hint{color:var(--muted);margin:12px 0 8px}
.status{min-height:1.5em;margin:8px 0 0;font-weight:600}
.status.done{color:var(--accent)}
.phone{width:260px;border:10px solid #222;border-radius:28px;background:#ededed;color:#191919;overflow:hidden;display:flex;flex-direction:column;height:420px;position:relative}
.phone .chat{flex:1;padding:12px;font-size:12px;color:#888;text-align:center}
.phone .bar{display:flex;border-top:1px solid #d5d5d5;background:#f7f7f7}
.phone .bar>div{flex:1;position:relative}
.phone .bar button{width:100%;border:none;border-left:1px solid #d5d5d5;border-radius:0;background:none;padding:12px 4px;color:#191919;font-size:13px}
.phone .bar>div:first-child button{border-left:none}
.phone .sub{position:absolute;bottom:calc(100% + 8px);left:50%;transform:translateX(-50%);min-width:100%;background:#fff;border:1px solid #d5d5d5;border-radius:6px;box-shadow:0 2px 10px #0002}
.phone .sub button{display:block;border-left:none;border-top:1px solid #eee;white-space:nowrap;padding:10px 14px}
.phone .sub button:first-child{border-top:none}
.phone .toast{position:absolute;left:12px;right:12px;bottom:60px;background:#000c;color:#fff;border-radius:8px;padding:8px;font-size:12px;text-align:center}
[hidden]{display:none!important}
"#;

pub fn document() -> Result<Document, JsValue> {
    web_sys::window().and_then(|w| w.document()).ok_or_else(|| "no document".into())
}

thread_local! {
    /// One parsed stylesheet, adopted by every shadow root of ours.
    static SHEET: std::cell::OnceCell<web_sys::CssStyleSheet> = const { std::cell::OnceCell::new() };
}

fn sheet() -> Result<web_sys::CssStyleSheet, JsValue> {
    SHEET.with(|cell| {
        if let Some(s) = cell.get() {
            return Ok(s.clone());
        }
        let s = web_sys::CssStyleSheet::new()?;
        s.replace_sync(STYLE)?;
        let _ = cell.set(s.clone());
        Ok(s)
    })
}

/// The shadow root of `host` (created on first use) with our stylesheet adopted.
pub fn shadow(host: &Element) -> Result<ShadowRoot, JsValue> {
    let root = match host.shadow_root() {
        Some(r) => r,
        None => host.attach_shadow(&web_sys::ShadowRootInit::new(web_sys::ShadowRootMode::Open))?,
    };
    let sheet = sheet()?;
    js_sys::Reflect::set(&root, &"adoptedStyleSheets".into(), &js_sys::Array::of1(&sheet))?;
    Ok(root)
}

/// A host element of ours at the end of `<body>`, for prompts that float over the page.
pub fn body_host(kind: &str, theme: &str) -> Result<Element, JsValue> {
    let doc = document()?;
    let host = doc.create_element("div")?;
    host.set_attribute("data-wxedge", kind)?;
    set_theme(&host, theme)?;
    doc.body().ok_or("no body")?.append_child(&host)?;
    Ok(host)
}

pub fn set_theme(host: &Element, theme: &str) -> Result<(), JsValue> {
    match theme {
        "light" | "dark" => host.set_attribute("data-theme", theme),
        _ => host.remove_attribute("data-theme"),
    }
}

/// Runs `f` on every event of `kind` on `target`, for the widget's lifetime.
pub fn on(target: &web_sys::EventTarget, kind: &str, f: impl FnMut(web_sys::Event) + 'static) -> Result<(), JsValue> {
    let c = Closure::<dyn FnMut(web_sys::Event)>::new(f);
    target.add_event_listener_with_callback(kind, c.as_ref().unchecked_ref())?;
    c.forget();
    Ok(())
}

pub async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(p).await;
}

/// A JSON request; answers the HTTP status and the parsed body (`null` when not JSON).
pub async fn fetch_json(method: &str, url: &str, body: Option<&str>) -> Result<(u16, JsValue), JsValue> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    if let Some(b) = body {
        init.set_body(&JsValue::from_str(b));
        let headers = js_sys::Object::new();
        js_sys::Reflect::set(&headers, &"content-type".into(), &"application/json".into())?;
        init.set_headers(&headers);
    }
    let window = web_sys::window().ok_or("no window")?;
    let resp: web_sys::Response = JsFuture::from(window.fetch_with_str_and_init(url, &init)).await?.unchecked_into();
    let status = resp.status();
    let json = match resp.json() {
        Ok(p) => JsFuture::from(p).await.unwrap_or(JsValue::NULL),
        Err(_) => JsValue::NULL,
    };
    Ok((status, json))
}

pub fn get_str(v: &JsValue, key: &str) -> Option<String> {
    js_sys::Reflect::get(v, &JsValue::from_str(key)).ok()?.as_string()
}
