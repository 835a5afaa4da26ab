//! The extension's JSON frames (api-spec.md) ⇄ `chatrelay.v1` frames.
//! Decoding checks shape only — which request, which transition — is the
//! core's to judge.

use chatrelay_proto::v1::{self as pb, extension_frame::Frame, server_frame};
use serde_json::{json, Map, Value};

use crate::rest::json::{response_type_name, thinking_time_name};

/// A frame that could not be decoded: the error frame's fields.
#[derive(Debug, PartialEq)]
pub struct BadFrame {
    pub request_id: Option<String>,
    pub error: String,
}

fn field<'a>(object: &'a Map<String, Value>, kind: &str, name: &str) -> Result<&'a str, String> {
    match object.get(name) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(format!("{kind}: missing field {name:?}")),
        Some(_) => Err(format!("{kind}: field {name:?} must be a string")),
    }
}

fn optional_field(
    object: &Map<String, Value>,
    kind: &str,
    name: &str,
) -> Result<Option<String>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{kind}: field {name:?} must be a string")),
    }
}

/// Decodes one text frame from the extension.
pub fn decode(text: &str) -> Result<pb::ExtensionFrame, BadFrame> {
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => {
            return Err(BadFrame {
                request_id: None,
                error: "frame must be a JSON object".into(),
            })
        }
        Err(e) => {
            return Err(BadFrame {
                request_id: None,
                error: format!("malformed JSON: {e}"),
            })
        }
    };
    let request_id = match object.get("request_id") {
        Some(Value::String(id)) => Some(id.clone()),
        _ => None,
    };
    decode_object(&object).map_err(|error| BadFrame {
        request_id: request_id.clone(),
        error,
    })
}

fn decode_object(object: &Map<String, Value>) -> Result<pb::ExtensionFrame, String> {
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        None | Some(Value::Null) => return Err("missing field \"type\"".into()),
        Some(_) => return Err("field \"type\" must be a string".into()),
    };
    let frame = match kind {
        "status_update" => {
            let request_id = field(object, kind, "request_id")?.to_string();
            let status = field(object, kind, "status")?;
            if status != "executing" {
                return Err(format!(
                    "status_update: status {status:?} is not \"executing\" (send a response or error frame to finish a request)"
                ));
            }
            Frame::StatusUpdate(pb::StatusUpdate {
                request_id,
                status: pb::RequestStatus::Executing.into(),
            })
        }
        "response" => Frame::Response(pb::RequestResponse {
            request_id: field(object, kind, "request_id")?.to_string(),
            response: field(object, kind, "response")?.to_string(),
            chat_id: field(object, kind, "chat_id")?.to_string(),
            chat_title: optional_field(object, kind, "chat_title")?,
        }),
        "error" => Frame::Error(pb::RequestError {
            request_id: field(object, kind, "request_id")?.to_string(),
            error: field(object, kind, "error")?.to_string(),
        }),
        other => {
            return Err(format!(
                "unknown frame type {other:?}; expected status_update, response or error"
            ))
        }
    };
    Ok(pb::ExtensionFrame { frame: Some(frame) })
}

/// Encodes a frame for the extension.
pub fn encode(frame: pb::ServerFrame) -> Option<String> {
    let value = match frame.frame? {
        server_frame::Frame::NewRequest(r) => json!({
            "type": "new_request",
            "request_id": r.request_id,
            "message": r.message,
            "response_type": response_type_name(r.response_type()),
            "thinking_time": thinking_time_name(r.thinking_time()),
            "chat_id": r.chat_id,
            "chat_db_id": r.chat_db_id,
        }),
        server_frame::Frame::Error(e) => error_frame(e.request_id, e.error),
    };
    Some(value.to_string())
}

/// The error frame sent for a frame the server could not apply.
pub fn error_frame(request_id: Option<String>, error: String) -> Value {
    json!({ "type": "error", "request_id": request_id, "error": error })
}
