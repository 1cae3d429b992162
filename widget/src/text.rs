//! What the widget says, in English and Simplified Chinese, and how it picks one.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    ZhCn,
}

impl Lang {
    /// The owner's choice first (`data-lang`), then the page's `<html lang>`, then the browser.
    pub fn choose(configured: Option<&str>, page: Option<&str>, browser: Option<&str>) -> Lang {
        let pick = |s: &str| if s.to_ascii_lowercase().starts_with("zh") { Lang::ZhCn } else { Lang::En };
        [configured, page, browser].into_iter().flatten().map(str::trim).find(|s| !s.is_empty()).map(pick).unwrap_or(Lang::En)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Desktop,
    Phone,
    /// WeChat's in-app browser: a long press on the code follows directly.
    WeChat,
}

impl Device {
    pub fn from_user_agent(ua: &str) -> Device {
        if ua.contains("MicroMessenger") {
            Device::WeChat
        } else if ["Mobi", "Android", "iPhone", "iPad", "HarmonyOS"].iter().any(|m| ua.contains(m)) {
            Device::Phone
        } else {
            Device::Desktop
        }
    }
}

pub struct Text {
    pub lang: Lang,
}

impl Text {
    fn pick(&self, en: &str, zh: &str) -> String {
        match self.lang {
            Lang::En => en.to_owned(),
            Lang::ZhCn => zh.to_owned(),
        }
    }

    pub fn title(&self, account: &str) -> String {
        match (self.lang, account.is_empty()) {
            (Lang::En, true) => "Follow us on WeChat".into(),
            (Lang::En, false) => ["Follow ", account, " on WeChat"].concat(),
            (Lang::ZhCn, true) => "关注我们的微信公众号".into(),
            (Lang::ZhCn, false) => ["关注「", account, "」公众号"].concat(),
        }
    }
    pub fn button(&self) -> String {
        self.pick("Follow on WeChat", "关注公众号")
    }
    pub fn banner(&self) -> String {
        self.pick("News and member offers on WeChat", "在微信获取最新消息和会员优惠")
    }
    pub fn hint(&self, device: Device) -> String {
        match device {
            Device::Desktop => {
                self.pick("Open WeChat on your phone, tap + → Scan, and point it at this code.", "打开手机微信，点「+」→「扫一扫」，扫描此二维码。")
            }
            Device::Phone => self.pick(
                "Save or screenshot this code, then in WeChat tap + → Scan → Album and pick it.",
                "保存或截屏此二维码，在微信「扫一扫」中点「相册」选取即可。",
            ),
            Device::WeChat => self.pick("Long-press the code to follow.", "长按识别二维码即可关注。"),
        }
    }
    pub fn save(&self) -> String {
        self.pick("Save the code", "保存二维码")
    }
    pub fn copy(&self) -> String {
        self.pick("Copy the account name", "复制公众号名称")
    }
    pub fn copied(&self, account: &str) -> String {
        match self.lang {
            Lang::En => ["Copied “", account, "” — search for it in WeChat."].concat(),
            Lang::ZhCn => ["已复制「", account, "」，在微信中搜索即可关注。"].concat(),
        }
    }
    pub fn copy_failed(&self, account: &str) -> String {
        match self.lang {
            Lang::En => ["Could not copy. Search WeChat for “", account, "”."].concat(),
            Lang::ZhCn => ["复制失败，请在微信中搜索「", account, "」。"].concat(),
        }
    }
    pub fn waiting(&self) -> String {
        self.pick("Waiting for your scan…", "等待扫码…")
    }
    pub fn scanned(&self) -> String {
        self.pick("Scanned — you already follow us. Thank you!", "已扫码——您已关注，感谢支持！")
    }
    pub fn followed(&self) -> String {
        self.pick("Followed — thank you!", "关注成功，感谢！")
    }
    pub fn logged_in(&self) -> String {
        self.pick("Logged in — welcome!", "登录成功，欢迎！")
    }
    pub fn confirm_in_wechat(&self) -> String {
        self.pick("Scanned — now confirm in WeChat (reply 1 in the chat).", "已扫码——请在微信中确认（在对话中回复 1）。")
    }
    pub fn login_failed(&self) -> String {
        self.pick("Scanned, but the log-in failed. Please try again.", "已扫码，但登录失败，请重试。")
    }
    pub fn renewed(&self) -> String {
        self.pick("The code expired; here is a fresh one.", "二维码已过期，已为您更新。")
    }
    pub fn failed(&self) -> String {
        self.pick("The code could not be loaded. Please try again later.", "二维码加载失败，请稍后再试。")
    }
    pub fn close(&self) -> String {
        self.pick("Close", "关闭")
    }
    pub fn loading(&self) -> String {
        self.pick("Loading the code…", "正在加载二维码…")
    }
    pub fn no_menu(&self) -> String {
        self.pick("This account has no custom menu yet.", "该公众号还没有自定义菜单。")
    }
    pub fn menu_label(&self) -> String {
        self.pick("Preview of the account's menu", "公众号菜单预览")
    }
    pub fn menu_opens(&self, what: &str) -> String {
        match self.lang {
            Lang::En => ["Opens ", what].concat(),
            Lang::ZhCn => ["打开 ", what].concat(),
        }
    }
    pub fn menu_sends(&self) -> String {
        self.pick("Sends a message to the account", "向公众号发送消息")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_follows_owner_then_page_then_browser() {
        assert_eq!(Lang::choose(Some("en"), Some("zh-CN"), Some("zh")), Lang::En);
        assert_eq!(Lang::choose(None, Some("zh-Hans"), Some("en-US")), Lang::ZhCn);
        assert_eq!(Lang::choose(None, Some(""), Some("zh-TW")), Lang::ZhCn);
        assert_eq!(Lang::choose(None, None, Some("de-DE")), Lang::En);
        assert_eq!(Lang::choose(None, None, None), Lang::En);
    }

    #[test]
    fn devices_from_real_user_agents() {
        let desktop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36";
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";
        let wechat = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/130.0 Mobile Safari/537.36 XWEB/1300 MMWEBSDK/20240301 MicroMessenger/8.0.49.2600(0x28003133) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64";
        assert_eq!(Device::from_user_agent(desktop), Device::Desktop);
        assert_eq!(Device::from_user_agent(iphone), Device::Phone);
        assert_eq!(Device::from_user_agent(wechat), Device::WeChat);
    }

    #[test]
    fn every_string_exists_in_both_languages() {
        for lang in [Lang::En, Lang::ZhCn] {
            let t = Text { lang };
            for s in [t.button(), t.banner(), t.copy(), t.waiting(), t.scanned(), t.followed(), t.renewed(), t.failed(), t.close(), t.no_menu(), t.menu_label()]
            {
                assert!(!s.is_empty());
            }
            assert!(t.title("Acme").contains("Acme"));
            assert_ne!(t.hint(Device::Desktop), t.hint(Device::WeChat));
        }
        assert!(Text { lang: Lang::ZhCn }.followed().contains("关注"));
    }
}
