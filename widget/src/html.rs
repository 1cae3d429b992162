//! The widget's markup, built as strings and set with one `innerHTML` per shadow root. Each
//! element built through the DOM costs the visitor an imported function and its glue; a template
//! costs a few bytes of text that gzip folds away. Buttons say what they do in `data-act`, read by
//! one delegated click listener per root (`lib.rs`, `on_click`).
//!
//! Everything from outside (the account name, menu labels and URLs, a code's URL) goes through
//! `escape`: an owner's menu or a visitor-chosen label can never become markup.

use crate::text::{Device, Text};

/// Text and attribute values made inert: `& < > " '` as entities.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A button of ours: `type=button` (never submits a host page's form) and what it does.
fn button(class: &str, act: &str, attrs: &str, label: &str) -> String {
    ["<button type=\"button\" class=\"", class, "\" data-act=\"", act, "\"", attrs, ">", &escape(label), "</button>"].concat()
}

fn opener(class: &str, t: &Text) -> String {
    button(class, "open", " aria-haspopup=\"dialog\"", &t.button())
}

/// The floating button at the bottom right.
pub fn floating(t: &Text) -> String {
    opener("floating primary", t)
}

/// The banner along the bottom, dismissible for the session.
pub fn banner(t: &Text, account: &str) -> String {
    [
        "<div class=\"banner\" role=\"region\" aria-label=\"",
        &escape(&t.title(account)),
        "\"><span>",
        &escape(&t.banner()),
        "</span>",
        &opener("primary", t),
        &button("dismiss", "dismiss", &[" aria-label=\"", &escape(&t.close()), "\""].concat(), "×"),
        "</div>",
    ]
    .concat()
}

/// The inline card in the page's own element.
pub fn inline_card(t: &Text, account: &str) -> String {
    ["<div class=\"card\"><span>", &escape(&t.title(account)), "</span>", &opener("primary", t), "</div>"].concat()
}

/// The follow dialog, the code still loading. `#qr` receives the code, `#status` the visit's
/// progress; on a phone outside WeChat a button copies the account name (`#copied` says so).
pub fn dialog(t: &Text, account: &str, device: Device) -> String {
    // On a phone outside WeChat the code cannot be scanned by the phone showing it: offer the
    // account name to search for. Inside WeChat a long press follows, no copying needed.
    let copy = if device == Device::Phone && !account.is_empty() {
        [&button("", "copy", "", &t.copy()), "<p class=\"hint\" id=\"copied\" aria-live=\"polite\"></p>"].concat()
    } else {
        String::new()
    };
    [
        // `data-act` on the dialog stops a click inside it from counting as one on the backdrop.
        "<div class=\"backdrop\" data-act=\"backdrop\"><div class=\"dialog\" data-act=\"\" role=\"dialog\" aria-modal=\"true\" aria-labelledby=\"wxedge-title\" aria-describedby=\"wxedge-hint\">",
        &button("x", "close", &[" aria-label=\"", &escape(&t.close()), "\""].concat(), "×"),
        "<h2 id=\"wxedge-title\">",
        &escape(&t.title(account)),
        "</h2><div class=\"qr\" id=\"qr\">",
        &escape(&t.loading()),
        "</div><p class=\"hint\" id=\"wxedge-hint\">",
        &escape(&t.hint(device)),
        "</p>",
        &copy,
        "<p class=\"status\" id=\"status\" role=\"status\" aria-live=\"polite\"></p></div></div>",
    ]
    .concat()
}

/// An SVG code (from `qr_svg`) named for screen readers.
pub fn labelled_svg(svg: &str, label: &str) -> String {
    match svg.strip_prefix("<svg ") {
        Some(rest) => ["<svg aria-label=\"", &escape(label), "\" ", rest].concat(),
        None => svg.to_owned(),
    }
}

/// The code as an `<img>` (what WeChat's long press recognises), `side` CSS px square; with a link that
/// saves it when `save` names one (phones outside WeChat: save, then Scan → Album).
pub fn code_image(png: &str, label: &str, side: &str, save: Option<&str>) -> String {
    let png = escape(png);
    let link = match save {
        Some(text) => ["<a class=\"save\" href=\"", &png, "\" download=\"wechat-follow-code.png\">", &escape(text), "</a>"].concat(),
        None => String::new(),
    };
    ["<img src=\"", &png, "\" alt=\"", &escape(label), "\" width=\"", side, "\" height=\"", side, "\">", &link].concat()
}

/// A static follow card (`data-wxedge-qr`): a title over the code.
pub fn static_card(title: &str, svg: &str) -> String {
    ["<div class=\"card\"><div><div>", &escape(title), "</div><div class=\"qr\">", &labelled_svg(svg, title), "</div></div></div>"].concat()
}

/// One button of the account's menu, as the preview shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuButton {
    pub name: String,
    /// What tapping it does, said in a toast (`Text::menu_opens` / `menu_sends`).
    pub does: String,
    pub subs: Vec<MenuButton>,
}

/// The phone mock: the account's name in the chat, then the menu bar (or a note that there is
/// none, once `menu` is known). Sub-menus open from their top button (`data-act=sub`); a leaf
/// shows what it does in the toast (`data-act=leaf`, the words in `data-does`).
pub fn phone(t: &Text, account: &str, menu: Option<&[MenuButton]>) -> String {
    let leaf = |b: &MenuButton| button("", "leaf", &[" data-does=\"", &escape(&b.does), "\""].concat(), &b.name);
    let (chat, bar) = match menu {
        None => (account.to_owned(), String::new()),
        Some([]) => (t.no_menu(), String::new()),
        Some(top) => {
            let cells: String = top
                .iter()
                .map(|b| {
                    let inner = if b.subs.is_empty() {
                        leaf(b)
                    } else {
                        let subs: String = b.subs.iter().map(leaf).collect();
                        [&button("", "sub", " aria-expanded=\"false\"", &["≡ ", &b.name].concat()), "<div class=\"sub\" hidden>", &subs, "</div>"].concat()
                    };
                    ["<div>", &inner, "</div>"].concat()
                })
                .collect();
            (account.to_owned(), ["<div class=\"toast\" aria-live=\"polite\" hidden></div><div class=\"bar\">", &cells, "</div>"].concat())
        }
    };
    ["<div class=\"phone\" role=\"group\" aria-label=\"", &escape(&t.menu_label()), "\"><div class=\"chat\">", &escape(&chat), "</div>", &bar, "</div>"]
        .concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Lang;

    const EN: Text = Text { lang: Lang::En };

    #[test]
    fn hostile_names_stay_text() {
        let evil = "\"><img src=x onerror=alert(1)>'&";
        for html in [
            banner(&EN, evil),
            inline_card(&EN, evil),
            dialog(&EN, evil, Device::Phone),
            static_card(evil, "<svg x>"),
            code_image(evil, evil, "220", Some(evil)),
            phone(&EN, evil, Some(&[MenuButton { name: evil.into(), does: evil.into(), subs: vec![] }])),
        ] {
            assert!(!html.contains("<img src=x"), "{html}");
            assert!(!html.contains("'&") && !html.contains("\"><img"), "{html}");
            assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"), "{html}");
        }
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn the_dialog_is_labelled_and_offers_copying_only_on_phones() {
        let desktop = dialog(&EN, "Acme", Device::Desktop);
        for part in ["role=\"dialog\"", "aria-modal=\"true\"", "id=\"wxedge-title\"", "id=\"wxedge-hint\"", "role=\"status\"", "data-act=\"close\""] {
            assert!(desktop.contains(part), "{part} in {desktop}");
        }
        assert!(!desktop.contains("data-act=\"copy\""));
        assert!(!dialog(&EN, "Acme", Device::WeChat).contains("data-act=\"copy\""));
        assert!(!dialog(&EN, "", Device::Phone).contains("data-act=\"copy\""));
        assert!(dialog(&EN, "Acme", Device::Phone).contains("data-act=\"copy\""));
    }

    #[test]
    fn codes_for_phones_are_images_of_the_asked_size() {
        let img = code_image("data:image/png;base64,AAA", "Follow", "220", None);
        assert!(img.starts_with("<img src=\"data:image/png;base64,AAA\""), "{img}");
        assert!(img.contains("width=\"220\" height=\"220\""), "{img}");
        assert!(!img.contains("download"));
        let phone = code_image("data:x", "Follow", "220", Some("Save"));
        assert!(phone.contains("<a class=\"save\" href=\"data:x\" download=\"wechat-follow-code.png\">Save</a>"), "{phone}");
    }

    #[test]
    fn svg_gets_a_label() {
        assert_eq!(labelled_svg("<svg viewBox=\"0 0 1 1\"></svg>", "A&B"), "<svg aria-label=\"A&amp;B\" viewBox=\"0 0 1 1\"></svg>");
    }

    #[test]
    fn the_menu_bar_nests_sub_menus_and_says_what_leaves_do() {
        let menu = [
            MenuButton { name: "Shop".into(), does: "Opens https://a.example/".into(), subs: vec![] },
            MenuButton {
                name: "Help".into(),
                does: String::new(),
                subs: vec![MenuButton { name: "FAQ".into(), does: "Sends a message to the account".into(), subs: vec![] }],
            },
        ];
        let html = phone(&EN, "Acme", Some(&menu));
        assert!(html.contains("data-act=\"leaf\" data-does=\"Opens https://a.example/\">Shop</button>"), "{html}");
        assert!(html.contains("data-act=\"sub\" aria-expanded=\"false\">≡ Help</button><div class=\"sub\" hidden>"), "{html}");
        assert!(html.contains(">FAQ</button></div>"), "{html}");
        assert!(html.contains("<div class=\"chat\">Acme</div>"));
        assert!(phone(&EN, "Acme", Some(&[])).contains(&EN.no_menu()));
        assert!(!phone(&EN, "Acme", None).contains("class=\"bar\""));
    }
}
