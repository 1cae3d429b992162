//! The follow widget. QR codes are drawn here, in the visitor's browser, from the URL the
//! worker hands out, so no image round-trip is needed and the code stays sharp at any size.

use qrcodegen::{QrCode, QrCodeEcc};
use wasm_bindgen::prelude::*;

/// An SVG of `text` as a QR code (medium error correction, 4-module quiet zone).
/// Pure and host-testable; the DOM side below only places it.
pub fn qr_svg(text: &str) -> Option<String> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let border = 4;
    let size = qr.size() + border * 2;
    let mut path = String::with_capacity((qr.size() * qr.size()) as usize * 4);
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\" role=\"img\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

const STYLE: &str = ":host{all:initial;display:inline-block;font:14px/1.4 system-ui,sans-serif;color:#1a1a1a}\
.card{border:1px solid #e3e3e3;border-radius:12px;padding:16px;background:#fff;text-align:center;width:220px}\
.qr svg{width:180px;height:180px}\
.title{font-weight:600;margin-bottom:8px}";

/// Renders a follow card with a QR code for `url` into a Shadow DOM on `host`, so the host
/// page's CSS cannot reach in and ours cannot leak out.
#[wasm_bindgen]
pub fn mount(host: &web_sys::Element, url: &str, title: &str) -> Result<(), JsValue> {
    let svg = qr_svg(url).ok_or_else(|| JsValue::from_str("text too long for a QR code"))?;
    let root = match host.shadow_root() {
        Some(r) => r,
        None => host.attach_shadow(&web_sys::ShadowRootInit::new(web_sys::ShadowRootMode::Open))?,
    };
    let sheet = web_sys::CssStyleSheet::new()?;
    sheet.replace_sync(STYLE)?;
    let sheets = js_sys::Array::of1(&sheet);
    js_sys::Reflect::set(&root, &"adoptedStyleSheets".into(), &sheets)?;
    let doc = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let card = doc.create_element("div")?;
    card.set_class_name("card");
    let heading = doc.create_element("div")?;
    heading.set_class_name("title");
    heading.set_text_content(Some(title));
    let qr = doc.create_element("div")?;
    qr.set_class_name("qr");
    qr.set_inner_html(&svg);
    if let Some(svg_el) = qr.first_element_child() {
        svg_el.set_attribute("aria-label", title)?;
    }
    card.append_child(&heading)?;
    card.append_child(&qr)?;
    root.set_inner_html("");
    root.append_child(&card)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_quiet_zone_and_modules() {
        let url = "http://weixin.qq.com/q/02abcDEF";
        let svg = qr_svg(url).unwrap();
        let qr = QrCode::encode_text(url, QrCodeEcc::Medium).unwrap();
        let side = qr.size() + 8;
        assert!(svg.contains(&format!("viewBox=\"0 0 {side} {side}\"")), "{svg}");
        let dark = (0..qr.size()).flat_map(|y| (0..qr.size()).map(move |x| (x, y))).filter(|&(x, y)| qr.get_module(x, y)).count();
        assert_eq!(svg.matches('M').count(), dark);
        assert!(svg.contains("M4,4h1v1h-1z"), "finder pattern corner must be dark");
        assert!(qr_svg(&"x".repeat(5000)).is_none());
    }
}
