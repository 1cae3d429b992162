//! Template messages and subscribe notifications: the calls (rules and records in `notify`).

use serde_json::{json, Value};

use super::{Call, Client};
use crate::error::{Error, Result};
use crate::notify::{Notice, Template, TemplateSource};
use crate::ports::{Clock, Http, Kv};

fn templates_of(v: &Value, list: &str, source: TemplateSource) -> Vec<Template> {
    v.get(list).and_then(Value::as_array).map(|a| a.iter().filter_map(|t| Template::from_wechat(t, source)).collect()).unwrap_or_default()
}

impl<P: Http + Kv + Clock> Client<'_, P> {
    /// The account's two industries (`template/get_industry`).
    pub async fn template_industry(&self) -> Result<Value> {
        self.call(&Call::get("/cgi-bin/template/get_industry")).await
    }

    /// Sets the account's industries by WeChat's industry numbers (`template/api_set_industry`).
    pub async fn set_template_industry(&self, primary: u32, secondary: u32) -> Result<()> {
        let body = json!({ "industry_id1": primary.to_string(), "industry_id2": secondary.to_string() });
        self.call(&Call::post("/cgi-bin/template/api_set_industry", body)).await.map(drop)
    }

    /// The account's private templates (`template/get_all_private_template`).
    pub async fn private_templates(&self) -> Result<Vec<Template>> {
        let v = self.call(&Call::get("/cgi-bin/template/get_all_private_template")).await?;
        Ok(templates_of(&v, "template_list", TemplateSource::Template))
    }

    /// Adds a template from the library by its short id and the keyword names to keep
    /// (`template/api_add_template`, since 2023 with `keyword_name_list`); answers its id.
    pub async fn add_template(&self, short_id: &str, keywords: &[String]) -> Result<String> {
        let body = json!({ "template_id_short": short_id, "keyword_name_list": keywords });
        let v = self.call(&Call::post("/cgi-bin/template/api_add_template", body)).await?;
        v.get("template_id").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| Error::Upstream("api_add_template answered without template_id".into()))
    }

    pub async fn delete_template(&self, template_id: &str) -> Result<()> {
        self.call(&Call::post("/cgi-bin/template/del_private_template", json!({ "template_id": template_id }))).await.map(drop)
    }

    /// The account's subscribe-notification templates (`wxaapi/newtmpl/gettemplate`).
    pub async fn subscribe_templates(&self) -> Result<Vec<Template>> {
        let v = self.call(&Call::get("/wxaapi/newtmpl/gettemplate")).await?;
        Ok(templates_of(&v, "data", TemplateSource::Subscribe))
    }

    /// The categories the account may pick subscribe templates from (`getcategory`).
    pub async fn subscribe_categories(&self) -> Result<Value> {
        self.call(&Call::get("/wxaapi/newtmpl/getcategory")).await
    }

    /// The library's titles in categories `ids` (`getpubtemplatetitles`), `limit` from `start`.
    pub async fn subscribe_library(&self, ids: &str, start: u32, limit: u32) -> Result<Value> {
        let call = Call::get("/wxaapi/newtmpl/getpubtemplatetitles").query("ids", ids).query("start", start.to_string()).query("limit", limit.to_string());
        self.call(&call).await
    }

    /// A library title's keywords (`getpubtemplatekeywords`).
    pub async fn subscribe_keywords(&self, tid: &str) -> Result<Value> {
        self.call(&Call::get("/wxaapi/newtmpl/getpubtemplatekeywords").query("tid", tid)).await
    }

    /// Adds a subscribe template from library title `tid` with keywords `kids` (`addtemplate`).
    pub async fn add_subscribe_template(&self, tid: &str, kids: &[u32], scene: &str) -> Result<String> {
        let v = self.call(&Call::post("/wxaapi/newtmpl/addtemplate", json!({ "tid": tid, "kidList": kids, "sceneDesc": scene }))).await?;
        v.get("priTmplId").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| Error::Upstream("addtemplate answered without priTmplId".into()))
    }

    pub async fn delete_subscribe_template(&self, id: &str) -> Result<()> {
        self.call(&Call::post("/wxaapi/newtmpl/deltemplate", json!({ "priTmplId": id }))).await.map(drop)
    }

    /// Sends a notice by its template's API; answers WeChat's msgid (bizsend answers none: 0).
    pub async fn send_notice(&self, notice: &Notice) -> Result<u64> {
        let path = match notice.source {
            TemplateSource::Template => "/cgi-bin/message/template/send",
            TemplateSource::Subscribe => "/cgi-bin/message/subscribe/bizsend",
        };
        let v = self.call(&Call::post(path, notice.to_wechat())).await?;
        Ok(v.get("msgid").or_else(|| v.get("msg_id")).and_then(|m| m.as_u64().or_else(|| m.as_str().and_then(|s| s.parse().ok()))).unwrap_or(0))
    }
}
