//! The checks of a PUT that replaces a stored object.
//!
//! Qovery's registry, helm repository and DNS provider PUTs replace the whole object:
//! a field the client leaves out is erased, one it changes by mistake is changed. The
//! fake therefore refuses any body that does not send back every field unchanged, so
//! that a client which would silently damage an object fails its tests instead.
//!
//! Each 400 names the field at fault (as a path like `config.region`), never a value:
//! a body that carries a secret key may have it in the wrong place.

use serde_json::{Map, Value};

use crate::routes::ApiError;

/// One JSON object of a body, and where it sits in the body (for the messages).
pub(crate) struct Fields<'a> {
    fields: &'a Map<String, Value>,
    /// Like `config.`, or empty at the top level.
    prefix: String,
}

impl<'a> Fields<'a> {
    /// The top level of a body, which must be a JSON object (`schema` names it).
    pub(crate) fn body(value: &'a Value, schema: &str) -> Result<Self, ApiError> {
        match value {
            Value::Object(fields) => Ok(Self {
                fields,
                prefix: String::new(),
            }),
            _ => Err(ApiError::bad_request(format!(
                "the body must be a JSON object ({schema})"
            ))),
        }
    }

    fn path(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn required(&self, name: &str) -> Result<&'a Value, ApiError> {
        self.fields.get(name).ok_or_else(|| {
            ApiError::bad_request(format!("field `{}` is required", self.path(name)))
        })
    }

    /// Whether the object has the field, whatever its value.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }

    /// Refuses the first field not in `allowed`, saying `why`.
    pub(crate) fn only(&self, allowed: &[&str], why: &str) -> Result<(), ApiError> {
        match self.fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(unknown) => Err(ApiError::bad_request(format!(
                "field `{}` is not accepted: {why}",
                self.path(unknown)
            ))),
            None => Ok(()),
        }
    }

    /// A required object field, whose own fields are checked in turn.
    pub(crate) fn object(&self, name: &str) -> Result<Fields<'a>, ApiError> {
        match self.required(name)? {
            Value::Object(fields) => Ok(Fields {
                fields,
                prefix: format!("{}.", self.path(name)),
            }),
            _ => Err(ApiError::bad_request(format!(
                "field `{}` must be a JSON object",
                self.path(name)
            ))),
        }
    }

    /// A required, non-empty string: a new value, such as a key.
    pub(crate) fn text(&self, name: &str) -> Result<&'a str, ApiError> {
        match self.required(name)? {
            Value::String(s) if !s.is_empty() => Ok(s),
            Value::String(_) => Err(ApiError::bad_request(format!(
                "field `{}` must not be empty",
                self.path(name)
            ))),
            _ => Err(ApiError::bad_request(format!(
                "field `{}` must be a string",
                self.path(name)
            ))),
        }
    }

    /// A required string that must come back as stored.
    pub(crate) fn same_text(&self, name: &str, stored: &str) -> Result<(), ApiError> {
        let sent = self.required(name)?;
        self.same(name, sent, &Value::from(stored))
    }

    /// A required boolean that must come back as stored.
    pub(crate) fn same_bool(&self, name: &str, stored: bool) -> Result<(), ApiError> {
        let sent = self.required(name)?;
        self.same(name, sent, &Value::from(stored))
    }

    /// An optional string: sent back as stored when the object has it, absent when
    /// it has not (sending one would add it).
    pub(crate) fn same_optional_text(
        &self,
        name: &str,
        stored: Option<&str>,
    ) -> Result<(), ApiError> {
        match (self.fields.get(name), stored) {
            (Some(sent), Some(stored)) => self.same(name, sent, &Value::from(stored)),
            (None, None) => Ok(()),
            (None, Some(_)) => Err(self.dropped(name)),
            (Some(_), None) => Err(ApiError::bad_request(format!(
                "field `{}` is set, but the stored object has none: leave it out",
                self.path(name)
            ))),
        }
    }

    /// A nullable string: sent back as stored when the object has it; absent or
    /// `null` when it has not.
    pub(crate) fn same_nullable_text(
        &self,
        name: &str,
        stored: Option<&str>,
    ) -> Result<(), ApiError> {
        match (self.fields.get(name), stored) {
            (None | Some(Value::Null), None) => Ok(()),
            (Some(sent), Some(stored)) => self.same(name, sent, &Value::from(stored)),
            (None, Some(_)) => Err(self.dropped(name)),
            (Some(_), None) => Err(ApiError::bad_request(format!(
                "field `{}` is set, but the stored object has none: send null or leave it out",
                self.path(name)
            ))),
        }
    }

    fn same(&self, name: &str, sent: &Value, stored: &Value) -> Result<(), ApiError> {
        if sent == stored {
            return Ok(());
        }
        let what = match (sent, stored) {
            (Value::String(_), Value::String(_)) | (Value::Bool(_), Value::Bool(_)) => {
                "differs from the stored value"
            }
            (_, Value::Bool(_)) => "must be a boolean",
            _ => "must be a string",
        };
        Err(ApiError::bad_request(format!(
            "field `{}` {what}; this PUT replaces the whole object, so send back what GET returned",
            self.path(name)
        )))
    }

    fn dropped(&self, name: &str) -> ApiError {
        ApiError::bad_request(format!(
            "field `{}` is missing, but the stored object has one; this PUT replaces the whole object, so send back what GET returned",
            self.path(name)
        ))
    }
}
