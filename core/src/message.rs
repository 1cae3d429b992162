//! The typed model of everything WeChat pushes to the callback URL.
//!
//! Every known message and event has its own variant so handlers can `match` exhaustively;
//! anything else lands in an `Unknown` variant that keeps the raw top-level fields, because
//! WeChat adds event types without notice and we must still answer them.

use crate::error::{Error, Result};
use crate::xml::{self, Element};

/// One incoming push: envelope fields plus the typed body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The account's original id (`gh_...`).
    pub to: String,
    /// The follower's OpenID.
    pub from: String,
    /// Seconds since the epoch, as WeChat sent it.
    pub create_time: u64,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Text {
        content: String,
        msg_id: u64,
    },
    Image {
        pic_url: String,
        media_id: String,
        msg_id: u64,
    },
    Voice {
        media_id: String,
        format: String,
        recognition: Option<String>,
        msg_id: u64,
    },
    Video {
        media_id: String,
        thumb_media_id: String,
        msg_id: u64,
    },
    ShortVideo {
        media_id: String,
        thumb_media_id: String,
        msg_id: u64,
    },
    Location {
        x: f64,
        y: f64,
        scale: u32,
        label: String,
        msg_id: u64,
    },
    Link {
        title: String,
        description: String,
        url: String,
        msg_id: u64,
    },
    Event(Event),
    /// A message type we do not model; `fields` are the top-level leaf elements, in order.
    Unknown {
        msg_type: String,
        fields: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A follow. `scene` is set when the follower came through a parametric QR code
    /// (`EventKey = qrscene_<scene>`).
    Subscribe {
        scene: Option<String>,
        ticket: Option<String>,
    },
    Unsubscribe,
    /// An existing follower scanned a parametric QR code.
    Scan {
        scene: String,
        ticket: Option<String>,
    },
    Location {
        latitude: f64,
        longitude: f64,
        precision: f64,
    },
    Click {
        key: String,
    },
    View {
        url: String,
        menu_id: Option<String>,
    },
    ScancodePush {
        key: String,
        scan_type: String,
        scan_result: String,
    },
    ScancodeWaitmsg {
        key: String,
        scan_type: String,
        scan_result: String,
    },
    PicSysphoto {
        key: String,
        pic_md5s: Vec<String>,
    },
    PicPhotoOrAlbum {
        key: String,
        pic_md5s: Vec<String>,
    },
    PicWeixin {
        key: String,
        pic_md5s: Vec<String>,
    },
    LocationSelect {
        key: String,
        x: f64,
        y: f64,
        scale: u32,
        label: String,
        poiname: String,
    },
    ViewMiniprogram {
        path: String,
        menu_id: Option<String>,
    },
    MassSendJobFinish(MassSendResult),
    TemplateSendJobFinish {
        msg_id: u64,
        status: String,
    },
    SubscribeMsgPopup(Vec<SubscribeMsgItem>),
    SubscribeMsgChange(Vec<SubscribeMsgItem>),
    SubscribeMsgSent(Vec<SubscribeMsgItem>),
    KfCreateSession {
        kf_account: String,
    },
    KfCloseSession {
        kf_account: String,
    },
    KfSwitchSession {
        from_kf_account: String,
        to_kf_account: String,
    },
    /// An event we do not model; keeps its name and the top-level leaf fields.
    Unknown {
        event: String,
        fields: Vec<(String, String)>,
    },
}

/// The outcome of a mass send, reported later by MASSSENDJOBFINISH. Careful: `filter_count` is
/// WeChat's count of followers left *after* filtering (those at 4 mass messages that month,
/// refusals, region/sex filters), normally `sent_count + error_count`; the number filtered out
/// is `total_count - filter_count`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MassSendResult {
    pub msg_id: u64,
    pub status: String,
    pub total_count: u64,
    pub filter_count: u64,
    pub sent_count: u64,
    pub error_count: u64,
}

/// One entry of the subscribe_msg_* events' repeated `<List>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeMsgItem {
    pub template_id: String,
    /// accept / reject / ban (popup and change events) or the send outcome (sent event).
    pub status: String,
    pub popup_scene: Option<String>,
    pub msg_id: Option<String>,
    pub error_code: Option<String>,
}

impl Message {
    /// Parses a plain (decrypted) callback body.
    pub fn parse(body: &str) -> Result<Message> {
        let root = xml::parse(body)?;
        Message::from_element(&root)
    }

    pub fn from_element(root: &Element) -> Result<Message> {
        if root.name != "xml" {
            return Err(Error::Xml(format!("root element is <{}>, expected <xml>", root.name)));
        }
        let to = required(root, "ToUserName")?.to_owned();
        let from = required(root, "FromUserName")?.to_owned();
        let create_time = number(root, "CreateTime")?;
        let msg_type = required(root, "MsgType")?;
        let kind = match msg_type {
            "text" => Kind::Text { content: text(root, "Content"), msg_id: msg_id(root)? },
            "image" => Kind::Image { pic_url: text(root, "PicUrl"), media_id: text(root, "MediaId"), msg_id: msg_id(root)? },
            "voice" => Kind::Voice {
                media_id: text(root, "MediaId"),
                format: text(root, "Format"),
                recognition: root.text_of("Recognition").map(str::to_owned),
                msg_id: msg_id(root)?,
            },
            "video" | "shortvideo" => {
                let (media_id, thumb_media_id, msg_id) = (text(root, "MediaId"), text(root, "ThumbMediaId"), msg_id(root)?);
                if msg_type == "video" {
                    Kind::Video { media_id, thumb_media_id, msg_id }
                } else {
                    Kind::ShortVideo { media_id, thumb_media_id, msg_id }
                }
            }
            "location" => Kind::Location {
                x: float(root, "Location_X")?,
                y: float(root, "Location_Y")?,
                scale: number(root, "Scale")? as u32,
                label: text(root, "Label"),
                msg_id: msg_id(root)?,
            },
            "link" => Kind::Link { title: text(root, "Title"), description: text(root, "Description"), url: text(root, "Url"), msg_id: msg_id(root)? },
            "event" => Kind::Event(parse_event(root)?),
            other => Kind::Unknown { msg_type: other.to_owned(), fields: leaf_fields(root) },
        };
        Ok(Message { to, from, create_time, kind })
    }

    /// The follower's MsgId for ordinary messages; events have none.
    pub fn msg_id(&self) -> Option<u64> {
        match &self.kind {
            Kind::Text { msg_id, .. }
            | Kind::Image { msg_id, .. }
            | Kind::Voice { msg_id, .. }
            | Kind::Video { msg_id, .. }
            | Kind::ShortVideo { msg_id, .. }
            | Kind::Location { msg_id, .. }
            | Kind::Link { msg_id, .. }
                if *msg_id != 0 =>
            {
                Some(*msg_id)
            }
            _ => None,
        }
    }

    /// True for messages the follower typed or sent (news replies to them may carry only one
    /// article, WeChat error 45008 otherwise).
    pub fn is_from_follower(&self) -> bool {
        !matches!(self.kind, Kind::Event(_))
    }

    /// The key that identifies WeChat's retries of this push. WxJava's form, because MsgId alone
    /// was seen to collide: `MsgId-CreateTime-From` for messages,
    /// `CreateTime-From-EventKey-Event` for events.
    pub fn dedupe_key(&self, raw_event_key: &str) -> String {
        match self.msg_id() {
            Some(id) => format!("{id}-{}-{}", self.create_time, self.from),
            None => format!("{}-{}-{}-{}", self.create_time, self.from, raw_event_key, self.event_name()),
        }
    }

    /// The MsgType / Event name as WeChat spells it.
    pub fn event_name(&self) -> &str {
        match &self.kind {
            Kind::Event(e) => e.name(),
            Kind::Unknown { msg_type, .. } => msg_type,
            _ => "",
        }
    }
}

impl Event {
    pub fn name(&self) -> &str {
        match self {
            Event::Subscribe { .. } => "subscribe",
            Event::Unsubscribe => "unsubscribe",
            Event::Scan { .. } => "SCAN",
            Event::Location { .. } => "LOCATION",
            Event::Click { .. } => "CLICK",
            Event::View { .. } => "VIEW",
            Event::ScancodePush { .. } => "scancode_push",
            Event::ScancodeWaitmsg { .. } => "scancode_waitmsg",
            Event::PicSysphoto { .. } => "pic_sysphoto",
            Event::PicPhotoOrAlbum { .. } => "pic_photo_or_album",
            Event::PicWeixin { .. } => "pic_weixin",
            Event::LocationSelect { .. } => "location_select",
            Event::ViewMiniprogram { .. } => "view_miniprogram",
            Event::MassSendJobFinish(_) => "MASSSENDJOBFINISH",
            Event::TemplateSendJobFinish { .. } => "TEMPLATESENDJOBFINISH",
            Event::SubscribeMsgPopup(_) => "subscribe_msg_popup_event",
            Event::SubscribeMsgChange(_) => "subscribe_msg_change_event",
            Event::SubscribeMsgSent(_) => "subscribe_msg_sent_event",
            Event::KfCreateSession { .. } => "kf_create_session",
            Event::KfCloseSession { .. } => "kf_close_session",
            Event::KfSwitchSession { .. } => "kf_switch_session",
            Event::Unknown { event, .. } => event,
        }
    }
}

fn parse_event(root: &Element) -> Result<Event> {
    let event = required(root, "Event")?;
    // A menu key is at most 128 bytes and a VIEW URL 1,024; the key also names the delivery for
    // retries, so an unbounded one is refused.
    if root.text_of("EventKey").is_some_and(|k| k.len() > 1024) {
        return Err(Error::MissingField("EventKey"));
    }
    let key = || text(root, "EventKey");
    Ok(match event {
        "subscribe" => {
            let k = key();
            let scene = k.strip_prefix("qrscene_").filter(|s| !s.is_empty()).map(str::to_owned);
            Event::Subscribe { scene, ticket: non_empty(root, "Ticket") }
        }
        "unsubscribe" => Event::Unsubscribe,
        "SCAN" | "scan" => Event::Scan { scene: key(), ticket: non_empty(root, "Ticket") },
        "LOCATION" => {
            Event::Location { latitude: float(root, "Latitude")?, longitude: float(root, "Longitude")?, precision: float(root, "Precision").unwrap_or(0.0) }
        }
        "CLICK" => Event::Click { key: key() },
        "VIEW" => Event::View { url: key(), menu_id: non_empty(root, "MenuId") },
        "scancode_push" | "scancode_waitmsg" => {
            let info = root.child("ScanCodeInfo");
            let scan_type = info.and_then(|i| i.text_of("ScanType")).unwrap_or_default().to_owned();
            let scan_result = info.and_then(|i| i.text_of("ScanResult")).unwrap_or_default().to_owned();
            if event == "scancode_push" {
                Event::ScancodePush { key: key(), scan_type, scan_result }
            } else {
                Event::ScancodeWaitmsg { key: key(), scan_type, scan_result }
            }
        }
        "pic_sysphoto" | "pic_photo_or_album" | "pic_weixin" => {
            let pic_md5s = root
                .child("SendPicsInfo")
                .and_then(|i| i.child("PicList"))
                .map(|l| l.children_named("item").filter_map(|i| i.text_of("PicMd5Sum")).map(str::to_owned).collect())
                .unwrap_or_default();
            match event {
                "pic_sysphoto" => Event::PicSysphoto { key: key(), pic_md5s },
                "pic_photo_or_album" => Event::PicPhotoOrAlbum { key: key(), pic_md5s },
                _ => Event::PicWeixin { key: key(), pic_md5s },
            }
        }
        "location_select" => {
            let info = root.child("SendLocationInfo").ok_or(Error::MissingField("SendLocationInfo"))?;
            Event::LocationSelect {
                key: key(),
                x: float(info, "Location_X")?,
                y: float(info, "Location_Y")?,
                scale: number(info, "Scale").unwrap_or(0) as u32,
                label: text(info, "Label"),
                poiname: text(info, "Poiname"),
            }
        }
        "view_miniprogram" => Event::ViewMiniprogram { path: key(), menu_id: non_empty(root, "MenuId") },
        "MASSSENDJOBFINISH" => Event::MassSendJobFinish(MassSendResult {
            msg_id: number(root, "MsgID").or_else(|_| number(root, "MsgId"))?,
            status: text(root, "Status"),
            total_count: number(root, "TotalCount").unwrap_or(0),
            filter_count: number(root, "FilterCount").unwrap_or(0),
            sent_count: number(root, "SentCount").unwrap_or(0),
            error_count: number(root, "ErrorCount").unwrap_or(0),
        }),
        "TEMPLATESENDJOBFINISH" => {
            Event::TemplateSendJobFinish { msg_id: number(root, "MsgID").or_else(|_| number(root, "MsgId"))?, status: text(root, "Status") }
        }
        "subscribe_msg_popup_event" => Event::SubscribeMsgPopup(subscribe_items(root, "SubscribeMsgPopupEvent")),
        "subscribe_msg_change_event" => Event::SubscribeMsgChange(subscribe_items(root, "SubscribeMsgChangeEvent")),
        "subscribe_msg_sent_event" => Event::SubscribeMsgSent(subscribe_items(root, "SubscribeMsgSentEvent")),
        "kf_create_session" => Event::KfCreateSession { kf_account: text(root, "KfAccount") },
        "kf_close_session" => Event::KfCloseSession { kf_account: text(root, "KfAccount") },
        "kf_switch_session" => Event::KfSwitchSession { from_kf_account: text(root, "FromKfAccount"), to_kf_account: text(root, "ToKfAccount") },
        other => Event::Unknown { event: other.to_owned(), fields: leaf_fields(root) },
    })
}

fn subscribe_items(root: &Element, wrapper: &str) -> Vec<SubscribeMsgItem> {
    let Some(w) = root.child(wrapper) else { return Vec::new() };
    w.children_named("List")
        .map(|l| SubscribeMsgItem {
            template_id: text(l, "TemplateId"),
            status: l.text_of("SubscribeStatusString").or_else(|| l.text_of("ErrorStatus")).unwrap_or_default().to_owned(),
            popup_scene: non_empty(l, "PopupScene"),
            msg_id: non_empty(l, "MsgID"),
            error_code: non_empty(l, "ErrorCode"),
        })
        .collect()
}

fn leaf_fields(root: &Element) -> Vec<(String, String)> {
    root.children.iter().filter(|c| c.children.is_empty()).map(|c| (c.name.to_owned(), c.text.clone().into_owned())).collect()
}

/// The longest value a routing field may have. OpenIDs and gh_ ids are under 40 bytes, MsgType
/// and Event names under 40; a longer one is not WeChat's.
const MAX_ID_BYTES: usize = 64;

fn required<'a>(el: &'a Element, name: &'static str) -> Result<&'a str> {
    match el.text_of(name) {
        Some(t) if !t.trim().is_empty() && t.trim().len() <= MAX_ID_BYTES => Ok(t.trim()),
        _ => Err(Error::MissingField(name)),
    }
}

fn text(el: &Element, name: &str) -> String {
    el.text_of(name).unwrap_or_default().to_owned()
}

fn non_empty(el: &Element, name: &str) -> Option<String> {
    el.text_of(name).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned)
}

fn number(el: &Element, name: &'static str) -> Result<u64> {
    required(el, name)?.parse().map_err(|_| Error::MissingField(name))
}

fn float(el: &Element, name: &'static str) -> Result<f64> {
    let v: f64 = required(el, name)?.parse().map_err(|_| Error::MissingField(name))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::MissingField(name))
    }
}

/// MsgId, or 0 when absent (then retries are keyed like events, by time and sender).
fn msg_id(el: &Element) -> Result<u64> {
    Ok(number(el, "MsgId").unwrap_or(0))
}
