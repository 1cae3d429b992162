//! The typed model over every message and event shape WeChat documents. Fixtures are our own,
//! written in the shapes the official docs and peer SDKs' captures show (indentation, CDATA or
//! not, extra elements, nested lists).

use wxedge_core::message::{Event, Kind, Message};

fn xml(body: &str) -> String {
    format!(
        "<xml>\n  <ToUserName><![CDATA[gh_abc]]></ToUserName>\n  <FromUserName><![CDATA[oFollower]]></FromUserName>\n  <CreateTime>1700000000</CreateTime>\n  {body}\n</xml>"
    )
}

fn parse(body: &str) -> Message {
    let m = Message::parse(&xml(body)).unwrap_or_else(|e| panic!("{body}: {e}"));
    assert_eq!((m.to.as_str(), m.from.as_str(), m.create_time), ("gh_abc", "oFollower", 1700000000));
    m
}

fn event(body: &str) -> Event {
    match parse(&format!("<MsgType><![CDATA[event]]></MsgType>{body}")).kind {
        Kind::Event(e) => e,
        other => panic!("not an event: {other:?}"),
    }
}

#[test]
fn ordinary_messages() {
    let m = parse("<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好 <b>&]]></Content><MsgId>1234567890123456</MsgId>");
    assert_eq!(m.kind, Kind::Text { content: "你好 <b>&".into(), msg_id: 1234567890123456 });
    assert_eq!(m.dedupe_key(""), "1234567890123456-1700000000-oFollower");

    let m = parse("<MsgType>image</MsgType><PicUrl>http://p/1.jpg</PicUrl><MediaId>mid</MediaId><MsgId>7</MsgId>");
    assert_eq!(m.kind, Kind::Image { pic_url: "http://p/1.jpg".into(), media_id: "mid".into(), msg_id: 7 });

    let m = parse("<MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[v]]></MediaId><Format><![CDATA[amr]]></Format><Recognition><![CDATA[腾讯]]></Recognition><MsgId>8</MsgId>");
    assert_eq!(m.kind, Kind::Voice { media_id: "v".into(), format: "amr".into(), recognition: Some("腾讯".into()), msg_id: 8 });

    let m = parse("<MsgType>video</MsgType><MediaId>v</MediaId><ThumbMediaId>t</ThumbMediaId><MsgId>9</MsgId>");
    assert_eq!(m.kind, Kind::Video { media_id: "v".into(), thumb_media_id: "t".into(), msg_id: 9 });
    let m = parse("<MsgType>shortvideo</MsgType><MediaId>v</MediaId><ThumbMediaId>t</ThumbMediaId><MsgId>10</MsgId>");
    assert_eq!(m.kind, Kind::ShortVideo { media_id: "v".into(), thumb_media_id: "t".into(), msg_id: 10 });

    let m = parse("<MsgType>location</MsgType><Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y><Scale>20</Scale><Label><![CDATA[位置信息]]></Label><MsgId>11</MsgId>");
    assert_eq!(m.kind, Kind::Location { x: 23.134521, y: 113.358803, scale: 20, label: "位置信息".into(), msg_id: 11 });

    let m = parse("<MsgType>link</MsgType><Title>公众平台官网链接</Title><Description>desc</Description><Url>http://u</Url><MsgId>12</MsgId>");
    assert_eq!(m.kind, Kind::Link { title: "公众平台官网链接".into(), description: "desc".into(), url: "http://u".into(), msg_id: 12 });
    assert!(m.is_from_follower());
}

#[test]
fn follows_scans_and_menu_events() {
    assert_eq!(event("<Event><![CDATA[subscribe]]></Event>"), Event::Subscribe { scene: None, ticket: None });
    assert_eq!(event("<Event>subscribe</Event><EventKey><![CDATA[]]></EventKey>"), Event::Subscribe { scene: None, ticket: None });
    assert_eq!(
        event("<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_123123]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket>"),
        Event::Subscribe { scene: Some("123123".into()), ticket: Some("TICKET".into()) }
    );
    assert_eq!(event("<Event>unsubscribe</Event><EventKey/>"), Event::Unsubscribe);
    assert_eq!(
        event("<Event><![CDATA[SCAN]]></Event><EventKey><![CDATA[pricing]]></EventKey><Ticket><![CDATA[T]]></Ticket>"),
        Event::Scan { scene: "pricing".into(), ticket: Some("T".into()) }
    );
    assert_eq!(
        event("<Event>LOCATION</Event><Latitude>23.137466</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision>"),
        Event::Location { latitude: 23.137466, longitude: 113.352425, precision: 119.38504 }
    );
    assert_eq!(event("<Event>CLICK</Event><EventKey>V1001_TODAY_MUSIC</EventKey>"), Event::Click { key: "V1001_TODAY_MUSIC".into() });
    assert_eq!(
        event("<Event>VIEW</Event><EventKey>http://www.qq.com/</EventKey><MenuId>208396938</MenuId>"),
        Event::View { url: "http://www.qq.com/".into(), menu_id: Some("208396938".into()) }
    );
    assert_eq!(
        event("<Event>scancode_push</Event><EventKey>6</EventKey><ScanCodeInfo><ScanType>qrcode</ScanType>\n<ScanResult>1</ScanResult>\n</ScanCodeInfo>"),
        Event::ScancodePush { key: "6".into(), scan_type: "qrcode".into(), scan_result: "1".into() }
    );
    assert_eq!(
        event("<Event>scancode_waitmsg</Event><EventKey>6</EventKey><ScanCodeInfo><ScanType>qrcode</ScanType><ScanResult>2</ScanResult></ScanCodeInfo>"),
        Event::ScancodeWaitmsg { key: "6".into(), scan_type: "qrcode".into(), scan_result: "2".into() }
    );
    let pics = "<SendPicsInfo><Count>2</Count><PicList><item><PicMd5Sum>aaa</PicMd5Sum></item><item><PicMd5Sum>bbb</PicMd5Sum></item></PicList></SendPicsInfo>";
    assert_eq!(
        event(&format!("<Event>pic_sysphoto</Event><EventKey>6</EventKey>{pics}")),
        Event::PicSysphoto { key: "6".into(), pic_md5s: vec!["aaa".into(), "bbb".into()] }
    );
    assert_eq!(
        event(&format!("<Event>pic_photo_or_album</Event><EventKey>6</EventKey>{pics}")),
        Event::PicPhotoOrAlbum { key: "6".into(), pic_md5s: vec!["aaa".into(), "bbb".into()] }
    );
    assert_eq!(
        event("<Event>pic_weixin</Event><EventKey>6</EventKey><SendPicsInfo><Count>0</Count><PicList></PicList></SendPicsInfo>"),
        Event::PicWeixin { key: "6".into(), pic_md5s: vec![] }
    );
    assert_eq!(
        event("<Event>location_select</Event><EventKey>6</EventKey><SendLocationInfo><Location_X>23</Location_X><Location_Y>113</Location_Y><Scale>15</Scale><Label>广州市海珠区客村艺苑路 106号</Label><Poiname></Poiname></SendLocationInfo>"),
        Event::LocationSelect { key: "6".into(), x: 23.0, y: 113.0, scale: 15, label: "广州市海珠区客村艺苑路 106号".into(), poiname: String::new() }
    );
    assert_eq!(
        event("<Event>view_miniprogram</Event><EventKey>pages/index/index</EventKey><MenuId>MENUID</MenuId>"),
        Event::ViewMiniprogram { path: "pages/index/index".into(), menu_id: Some("MENUID".into()) }
    );
}

#[test]
fn job_reports_subscribe_messages_and_customer_service() {
    let e = event("<Event><![CDATA[MASSSENDJOBFINISH]]></Event><MsgID>1000001625</MsgID><Status><![CDATA[err(30003)]]></Status><TotalCount>100</TotalCount><FilterCount>80</FilterCount><SentCount>75</SentCount><ErrorCount>5</ErrorCount><CopyrightCheckResult><Count>1</Count><ResultList><item><ArticleIdx>1</ArticleIdx></item></ResultList><CheckState>2</CheckState></CopyrightCheckResult>");
    match e {
        Event::MassSendJobFinish(r) => {
            assert_eq!((r.msg_id, r.status.as_str()), (1000001625, "err(30003)"));
            assert_eq!((r.total_count, r.filter_count, r.sent_count, r.error_count), (100, 80, 75, 5));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        event("<Event>TEMPLATESENDJOBFINISH</Event><MsgID>200163840</MsgID><Status><![CDATA[failed:user block]]></Status>"),
        Event::TemplateSendJobFinish { msg_id: 200163840, status: "failed:user block".into() }
    );
    let popup = event("<Event>subscribe_msg_popup_event</Event><SubscribeMsgPopupEvent><List><TemplateId>T1</TemplateId><SubscribeStatusString>accept</SubscribeStatusString><PopupScene>2</PopupScene></List><List><TemplateId>T2</TemplateId><SubscribeStatusString>reject</SubscribeStatusString><PopupScene>2</PopupScene></List></SubscribeMsgPopupEvent>");
    match popup {
        Event::SubscribeMsgPopup(items) => {
            assert_eq!(items.len(), 2);
            assert_eq!((items[1].template_id.as_str(), items[1].status.as_str(), items[1].popup_scene.as_deref()), ("T2", "reject", Some("2")));
        }
        other => panic!("{other:?}"),
    }
    match event("<Event>subscribe_msg_change_event</Event><SubscribeMsgChangeEvent><List><TemplateId>T</TemplateId><SubscribeStatusString>reject</SubscribeStatusString></List></SubscribeMsgChangeEvent>") {
        Event::SubscribeMsgChange(items) => assert_eq!(items[0].status, "reject"),
        other => panic!("{other:?}"),
    }
    match event("<Event>subscribe_msg_sent_event</Event><SubscribeMsgSentEvent><List><TemplateId>T</TemplateId><MsgID>1700827132819554304</MsgID><ErrorCode>0</ErrorCode><ErrorStatus>success</ErrorStatus></List></SubscribeMsgSentEvent>") {
        Event::SubscribeMsgSent(items) => {
            assert_eq!((items[0].msg_id.as_deref(), items[0].error_code.as_deref(), items[0].status.as_str()), (Some("1700827132819554304"), Some("0"), "success"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(event("<Event>kf_create_session</Event><KfAccount>test1@test</KfAccount>"), Event::KfCreateSession { kf_account: "test1@test".into() });
    assert_eq!(event("<Event>kf_close_session</Event><KfAccount>test1@test</KfAccount>"), Event::KfCloseSession { kf_account: "test1@test".into() });
    assert_eq!(
        event("<Event>kf_switch_session</Event><FromKfAccount>a@t</FromKfAccount><ToKfAccount>b@t</ToKfAccount>"),
        Event::KfSwitchSession { from_kf_account: "a@t".into(), to_kf_account: "b@t".into() }
    );
}

#[test]
fn unknown_types_keep_their_fields_and_extra_elements_are_ignored() {
    let m = parse("<MsgType>device_text</MsgType><DeviceType>dt</DeviceType><Content>YWJj</Content>");
    match m.kind {
        Kind::Unknown { msg_type, fields } => {
            assert_eq!(msg_type, "device_text");
            assert!(fields.contains(&("DeviceType".into(), "dt".into())));
        }
        other => panic!("{other:?}"),
    }
    match event("<Event>WifiConnected</Event><ConnectTime>0</ConnectTime><ShopId>1</ShopId>") {
        Event::Unknown { event, fields } => {
            assert_eq!(event, "WifiConnected");
            assert!(fields.contains(&("ShopId".into(), "1".into())));
        }
        other => panic!("{other:?}"),
    }
    // A kitchen-sink text message: unknown elements anywhere, nested or not, change nothing.
    let m = parse("<MsgType>text</MsgType><Content>hi</Content><MsgId>5</MsgId><Bizmsgmenuid>1</Bizmsgmenuid><Extra><Deep>x</Deep></Extra>");
    assert_eq!(m.kind, Kind::Text { content: "hi".into(), msg_id: 5 });
}

#[test]
fn events_are_deduplicated_by_time_sender_key_and_name() {
    let body = xml("<MsgType>event</MsgType><Event>subscribe</Event><EventKey>qrscene_123123</EventKey>");
    let m = Message::parse(&body).unwrap();
    assert_eq!(m.dedupe_key("qrscene_123123"), "1700000000-oFollower-qrscene_123123-subscribe");
}

#[test]
fn refuses_bodies_that_are_not_messages() {
    for body in [
        "<xml><FromUserName>a</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType></xml>",
        "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>soon</CreateTime><MsgType>text</MsgType></xml>",
        "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime></xml>",
        "<notxml><ToUserName>a</ToUserName></notxml>",
        "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType></xml>",
        "<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>LOCATION</Event><Latitude>NaN</Latitude><Longitude>1</Longitude></xml>",
    ] {
        assert!(Message::parse(body).is_err(), "{body}");
    }
}

#[test]
fn hostile_fields_are_refused() {
    let text = |from: &str, content: &str| {
        format!("<xml><ToUserName>gh_a</ToUserName><FromUserName>{from}</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content><![CDATA[{content}]]></Content><MsgId>1</MsgId></xml>")
    };
    assert!(wxedge_core::message::Message::parse(&text("oF", "fine")).is_ok());
    let e = wxedge_core::message::Message::parse(&text("oF", "bell\u{7}")).unwrap_err();
    assert!(e.to_string().contains("control character 0x07"), "{e}");
    assert!(wxedge_core::message::Message::parse(&text("oF", "tab\tnew\nline\r")).is_ok());
    let e = wxedge_core::message::Message::parse(&text(&"o".repeat(65), "x")).unwrap_err();
    assert_eq!(e, wxedge_core::Error::MissingField("FromUserName"));
    let click = |key: &str| {
        format!("<xml><ToUserName>gh_a</ToUserName><FromUserName>oF</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>CLICK</Event><EventKey>{key}</EventKey></xml>")
    };
    assert!(wxedge_core::message::Message::parse(&click(&"k".repeat(128))).is_ok());
    assert_eq!(wxedge_core::message::Message::parse(&click(&"k".repeat(1025))).unwrap_err(), wxedge_core::Error::MissingField("EventKey"));
}
