//! Followers and tags.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Call, Client};
use crate::error::{Error, Result};
use crate::ports::{Clock, Http, Kv};

/// WeChat's limits on tags.
pub const MAX_TAG_NAME_BYTES: usize = 30;
pub const MAX_TAGGING_BATCH: usize = 50;
pub const MAX_BATCHGET: usize = 100;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// 0 when the person does not follow (any more); the other fields are then absent.
    pub subscribe: u8,
    pub openid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub language: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub remark: String,
    #[serde(default)]
    pub tagid_list: Vec<u64>,
    /// ADD_SCENE_QR_CODE, ADD_SCENE_SEARCH, …
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subscribe_scene: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qr_scene: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub qr_scene_str: String,
}

/// One page of `user/get`. `next_openid` is empty after the last page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FollowerPage {
    pub total: u64,
    pub openids: Vec<String>,
    pub next_openid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub count: u64,
}

fn check_tag_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > MAX_TAG_NAME_BYTES {
        return Err(Error::Refused(format!("a tag name must be 1 to {MAX_TAG_NAME_BYTES} bytes, {name:?} is {}", name.len())));
    }
    Ok(())
}

fn page_of(v: &Value) -> FollowerPage {
    FollowerPage {
        total: v.get("total").and_then(Value::as_u64).unwrap_or(0),
        openids: v
            .pointer("/data/openid")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default(),
        next_openid: v.get("next_openid").and_then(Value::as_str).unwrap_or("").to_owned(),
    }
}

impl<P: Http + Kv + Clock> Client<'_, P> {
    pub async fn user_info(&self, openid: &str) -> Result<UserInfo> {
        self.call_as(&Call::get("/cgi-bin/user/info").query("openid", openid).query("lang", "zh_CN")).await
    }

    pub async fn user_infos(&self, openids: &[String]) -> Result<Vec<UserInfo>> {
        if openids.len() > MAX_BATCHGET {
            return Err(Error::Refused(format!("user/info/batchget takes at most {MAX_BATCHGET} OpenIDs, not {}", openids.len())));
        }
        let list: Vec<Value> = openids.iter().map(|o| json!({ "openid": o, "lang": "zh_CN" })).collect();
        let v = self.call(&Call::post("/cgi-bin/user/info/batchget", json!({ "user_list": list }))).await?;
        serde_json::from_value(v.get("user_info_list").cloned().unwrap_or_else(|| json!([])))
            .map_err(|e| Error::Upstream(format!("unexpected batchget answer: {e}")))
    }

    /// One page of followers (10,000 at most) after `next_openid` ("" for the first page).
    pub async fn followers(&self, next_openid: &str) -> Result<FollowerPage> {
        let mut call = Call::get("/cgi-bin/user/get");
        if !next_openid.is_empty() {
            call = call.query("next_openid", next_openid);
        }
        Ok(page_of(&self.call(&call).await?))
    }

    pub async fn create_tag(&self, name: &str) -> Result<Tag> {
        check_tag_name(name)?;
        let v = self.call(&Call::post("/cgi-bin/tags/create", json!({ "tag": { "name": name } }))).await?;
        serde_json::from_value(v.get("tag").cloned().unwrap_or_default()).map_err(|e| Error::Upstream(format!("unexpected tags/create answer: {e}")))
    }

    pub async fn tags(&self) -> Result<Vec<Tag>> {
        let v = self.call(&Call::get("/cgi-bin/tags/get")).await?;
        serde_json::from_value(v.get("tags").cloned().unwrap_or_else(|| json!([]))).map_err(|e| Error::Upstream(format!("unexpected tags/get answer: {e}")))
    }

    pub async fn rename_tag(&self, id: u64, name: &str) -> Result<()> {
        check_tag_name(name)?;
        self.call(&Call::post("/cgi-bin/tags/update", json!({ "tag": { "id": id, "name": name } }))).await.map(drop)
    }

    pub async fn delete_tag(&self, id: u64) -> Result<()> {
        self.call(&Call::post("/cgi-bin/tags/delete", json!({ "tag": { "id": id } }))).await.map(drop)
    }

    /// Tags (or untags) any number of followers, in WeChat's batches of 50.
    pub async fn tag_followers(&self, tag_id: u64, openids: &[String], tag: bool) -> Result<()> {
        let path = if tag { "/cgi-bin/tags/members/batchtagging" } else { "/cgi-bin/tags/members/batchuntagging" };
        for batch in openids.chunks(MAX_TAGGING_BATCH) {
            self.call(&Call::post(path, json!({ "openid_list": batch, "tagid": tag_id }))).await?;
        }
        Ok(())
    }

    pub async fn tags_of(&self, openid: &str) -> Result<Vec<u64>> {
        let v = self.call(&Call::post("/cgi-bin/tags/getidlist", json!({ "openid": openid }))).await?;
        Ok(v.get("tagid_list").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default())
    }

    /// One page of the followers carrying a tag.
    pub async fn tag_members(&self, tag_id: u64, next_openid: &str) -> Result<FollowerPage> {
        let v = self.call(&Call::post("/cgi-bin/user/tag/get", json!({ "tagid": tag_id, "next_openid": next_openid }))).await?;
        Ok(page_of(&v))
    }
}
