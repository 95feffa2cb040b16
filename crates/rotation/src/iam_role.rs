//! The IAM role Qovery is to assume after a migration, read but never changed: its ARN,
//! and what its trust policy lets whom do. The migration's preflight (dry run report)
//! uses it; nothing here calls AWS (`iam::get_role` does).
//!
//! The analysis judges one thing only: whether some principal of another account may
//! assume the role, which Qovery needs. Qovery publishes neither its principal nor
//! whether it sends an external id, so nothing here claims a policy will work: shapes it
//! does not model are reported as they are, and the canary cluster tells.

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What every ARN error message shows, so that an operator sees the shape to type.
const EXPECTED_ROLE_ARN: &str = "arn:aws:iam::<12-digit account id>:role/<optional path/>name";

/// IAM's limits: a role name is 1 to 64 characters, its path plus name at most 512.
const MAX_ROLE_NAME: usize = 64;
const MAX_ROLE_RESOURCE: usize = 512;

/// A role ARN taken apart: `arn:<partition>:iam::<account_id>:role<path><name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleArn {
    pub partition: String,
    pub account_id: String,
    /// Between `role` and the name, with both slashes: `/` when the role has no path,
    /// `/qovery/` for `role/qovery/name`.
    pub path: String,
    /// The last path segment, what `iam:GetRole` takes.
    pub name: String,
}

/// Checks `arn` against `^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}$` (by
/// hand: the crate has no regex dependency) with a name of 1 to 64 characters, and
/// takes it apart. The error says what is wrong and shows the expected shape.
pub fn parse_role_arn(arn: &str) -> Result<RoleArn, String> {
    let wrong = |what: String| {
        Err(format!(
            "role ARN {arn:?} {what}; expected {EXPECTED_ROLE_ARN}"
        ))
    };
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account_id, resource] = fields[..] else {
        return wrong("does not have the six colon-separated fields of an ARN".to_string());
    };
    if prefix != "arn" {
        return wrong("does not start with \"arn:\"".to_string());
    }
    let partition_ok = partition
        .strip_prefix("aws")
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
    if !partition_ok {
        return wrong(format!(
            "has partition {partition:?}, not aws, aws-cn, aws-us-gov..."
        ));
    }
    if service != "iam" {
        return wrong(format!("names service {service:?}, not iam"));
    }
    if !region.is_empty() {
        return wrong(format!("names region {region:?}; IAM ARNs have none"));
    }
    if account_id.len() != 12 || !account_id.chars().all(|c| c.is_ascii_digit()) {
        return wrong(format!("has account {account_id:?}, not 12 digits"));
    }
    let Some(path_and_name) = resource.strip_prefix("role/") else {
        return wrong(format!("names {resource:?}, not a role (role/...)"));
    };
    if path_and_name.is_empty() || path_and_name.len() > MAX_ROLE_RESOURCE {
        return wrong(format!(
            "has a role path and name of {} characters, not 1 to {MAX_ROLE_RESOURCE}",
            path_and_name.len()
        ));
    }
    if let Some(bad) = path_and_name.chars().find(|&c| !is_role_char(c)) {
        return wrong(format!(
            "holds {bad:?}; a role path and name take only letters, digits and _+=,.@/-"
        ));
    }
    // The name is the last segment; a trailing "/" leaves none.
    let (path, name) = match path_and_name.rfind('/') {
        Some(i) => (
            format!("/{}", &path_and_name[..=i]),
            &path_and_name[i + 1..],
        ),
        None => ("/".to_string(), path_and_name),
    };
    if name.is_empty() {
        return wrong("ends with \"/\": the role name is missing".to_string());
    }
    if name.len() > MAX_ROLE_NAME {
        return wrong(format!(
            "has a role name of {} characters; IAM allows at most {MAX_ROLE_NAME}",
            name.len()
        ));
    }
    Ok(RoleArn {
        partition: partition.to_string(),
        account_id: account_id.to_string(),
        path,
        name: name.to_string(),
    })
}

/// `\w` as IAM means it (ASCII letters, digits, `_`) and `+=,.@/-`.
fn is_role_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@/-".contains(c)
}

/// The trust policy as `GetRole` returns it. IAM's API sends `AssumeRolePolicyDocument`
/// URL-encoded (RFC 3986) and aws-sdk-iam hands it over as it came, so it is
/// percent-decoded first; a document that is already JSON (it starts with `{`: an
/// encoded one starts with `%7B`) is parsed as it is, since decoding it again would
/// change any `%` it holds.
pub fn decode_trust_policy(raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("the role's trust policy is empty".to_string());
    }
    let decoded = if raw.starts_with('{') {
        raw.to_string()
    } else {
        percent_decode_str(raw)
            .decode_utf8()
            .map_err(|e| format!("the role's trust policy is not UTF-8 once URL-decoded: {e}"))?
            .into_owned()
    };
    let policy: Value = serde_json::from_str(&decoded)
        .map_err(|e| format!("the role's trust policy is not valid JSON: {e}"))?;
    if !policy.is_object() {
        return Err("the role's trust policy is JSON but not an object".to_string());
    }
    Ok(policy)
}

/// One statement of a trust policy, normalized: single strings become lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStatement {
    pub effect: String,
    pub actions: Vec<String>,
    /// `"*"`, or `<type>:<value>`: `AWS:arn:aws:iam::999999999999:root`,
    /// `Service:ec2.amazonaws.com`, `Federated:...`, `CanonicalUser:...`.
    pub principals: Vec<String>,
    pub conditions: Vec<TrustCondition>,
    /// What this module does not model (`NotPrincipal`, `NotAction`), as written.
    pub unsupported: Vec<String>,
}

/// One `operator: {key: values}` of a statement's `Condition`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustCondition {
    pub operator: String,
    pub key: String,
    pub values: Vec<String>,
}

/// What a trust policy lets whom do, for the dry run report and the preflight's check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustReport {
    pub statements: Vec<TrustStatement>,
    /// `AWS` principals of another account than the role's (an ARN or account id, or
    /// `*`) that an `Allow` statement lets call `sts:AssumeRole`.
    pub outside_principals: Vec<String>,
    /// The values of every `sts:ExternalId` condition of those statements; `None` when
    /// none has one.
    pub external_id: Option<Vec<String>>,
    /// An allowing statement names the principal `*` (or `{"AWS": "*"}`): anyone, of any
    /// account, limited only by its conditions.
    pub wildcard_principal: bool,
}

/// Normalizes `policy` and finds the principals of other accounts than `role`'s that it
/// lets assume the role.
pub fn analyse_trust(policy: &Value, role: &RoleArn) -> TrustReport {
    let statements: Vec<TrustStatement> = match policy.get("Statement") {
        Some(Value::Array(items)) => items.iter().map(normalize_statement).collect(),
        Some(item) => vec![normalize_statement(item)],
        None => Vec::new(),
    };
    let mut outside_principals = Vec::new();
    let mut external_ids: Option<Vec<String>> = None;
    let mut wildcard_principal = false;
    for statement in statements.iter().filter(|s| s.lets_assume_role()) {
        for principal in &statement.principals {
            let Some(value) = aws_principal(principal) else {
                continue;
            };
            wildcard_principal |= value == "*";
            if is_other_account(value, &role.account_id) {
                push_new(&mut outside_principals, value);
            }
        }
        for condition in statement.conditions.iter().filter(|c| c.is_external_id()) {
            let ids = external_ids.get_or_insert_with(Vec::new);
            for value in &condition.values {
                push_new(ids, value);
            }
        }
    }
    TrustReport {
        statements,
        outside_principals,
        external_id: external_ids,
        wildcard_principal,
    }
}

impl TrustReport {
    /// Whether some principal of another account may assume the role: Qovery's
    /// principal is not published, so this is all the preflight can demand.
    pub fn lets_outside_assume(&self) -> bool {
        !self.outside_principals.is_empty()
    }

    /// The dry run report's lines about the role's trust policy.
    pub fn lines(&self, role_arn: &str, organization_id: &str) -> Vec<String> {
        let mut lines = vec![format!("Trust policy of role {role_arn}:")];
        if self.wildcard_principal {
            lines.push(
                "WARNING: principal \"*\" lets any principal of any AWS account assume this \
                 role, stopped only by the conditions below; give Qovery's principal instead."
                    .to_string(),
            );
        }
        if self.statements.is_empty() {
            lines.push("it has no statement: no principal can assume this role".to_string());
        }
        for statement in &self.statements {
            lines.push(statement.line());
        }
        if !self.lets_outside_assume() {
            let account = parse_role_arn(role_arn).map_or_else(
                |_| "its account".to_string(),
                |role| format!("account {}", role.account_id),
            );
            lines.push(format!(
                "it lets no principal outside {account} assume it, so Qovery cannot; \
                 re-create it with Qovery's CloudFormation template"
            ));
        }
        match &self.external_id {
            Some(ids) => {
                lines.push(format!("requires external id {}", ids.join(" or ")));
                if ids
                    .iter()
                    .any(|id| id.eq_ignore_ascii_case(organization_id))
                {
                    lines.push("this equals your Qovery organization id".to_string());
                }
                lines.push(
                    "Qovery's API has no external-id field; the canary shows whether Qovery \
                     sends this value"
                        .to_string(),
                );
                // One allowing statement without the condition is enough to assume the
                // role without an external id.
                let without: Vec<&str> = self
                    .statements
                    .iter()
                    .filter(|s| {
                        s.lets_assume_role() && !s.conditions.iter().any(|c| c.is_external_id())
                    })
                    .flat_map(|s| s.principals.iter().map(String::as_str))
                    .collect();
                if !without.is_empty() {
                    lines.push(format!(
                        "but not in every statement: {} can assume it without one",
                        without.join(", ")
                    ));
                }
            }
            None => lines.push(
                "No external id: any principal allowed above can assume this role, including \
                 Qovery acting for another customer who learns its ARN (the confused-deputy \
                 problem). See README, Move to an IAM role."
                    .to_string(),
            ),
        }
        lines
    }
}

impl TrustStatement {
    /// An `Allow` this module understands whose actions include `sts:AssumeRole`.
    fn lets_assume_role(&self) -> bool {
        self.effect == "Allow"
            && self.unsupported.is_empty()
            && self
                .actions
                .iter()
                .any(|a| iam_pattern_matches(a, "sts:AssumeRole"))
    }

    fn line(&self) -> String {
        let principals = self.principals.join(", ");
        let when = self.conditions_text();
        if self.effect == "Allow" && self.unsupported.is_empty() {
            if self.lets_assume_role() {
                return format!("allows {principals} to assume it{when}");
            }
            return format!(
                "allows {principals} to call {}{when}",
                self.actions.join(", ")
            );
        }
        // A Deny or a shape this module does not model: written out as it stands.
        let mut parts = vec![self.effect.clone()];
        if !self.actions.is_empty() {
            parts.push(self.actions.join(", "));
        }
        if !principals.is_empty() {
            parts.push(format!("for {principals}"));
        }
        let unsupported = self
            .unsupported
            .iter()
            .map(|u| format!("; {u}"))
            .collect::<String>();
        format!(
            "{}{when}{unsupported}: not judged: the canary tells",
            parts.join(" ")
        )
    }

    fn conditions_text(&self) -> String {
        if self.conditions.is_empty() {
            return String::new();
        }
        let each: Vec<String> = self
            .conditions
            .iter()
            .map(|c| format!("{} {} = {}", c.operator, c.key, c.values.join(" or ")))
            .collect();
        format!(" when {}", each.join(" and "))
    }
}

impl TrustCondition {
    /// Condition keys are case-insensitive in IAM.
    fn is_external_id(&self) -> bool {
        self.key.eq_ignore_ascii_case("sts:ExternalId")
    }
}

fn normalize_statement(statement: &Value) -> TrustStatement {
    let Some(fields) = statement.as_object() else {
        return TrustStatement {
            effect: String::new(),
            actions: Vec::new(),
            principals: Vec::new(),
            conditions: Vec::new(),
            unsupported: vec![format!("a statement that is not an object: {statement}")],
        };
    };
    let unsupported = ["NotPrincipal", "NotAction"]
        .iter()
        .filter_map(|&name| fields.get(name).map(|v| format!("{name}: {v}")))
        .collect();
    TrustStatement {
        effect: fields.get("Effect").map(value_text).unwrap_or_default(),
        actions: fields.get("Action").map(strings).unwrap_or_default(),
        principals: fields.get("Principal").map(principals).unwrap_or_default(),
        conditions: fields.get("Condition").map(conditions).unwrap_or_default(),
        unsupported,
    }
}

/// `"*"`, or each `{type: value | [values]}` entry as `type:value`.
fn principals(principal: &Value) -> Vec<String> {
    match principal {
        Value::Object(types) => types
            .iter()
            .flat_map(|(kind, values)| {
                strings(values)
                    .into_iter()
                    .map(move |v| format!("{kind}:{v}"))
            })
            .collect(),
        other => strings(other),
    }
}

fn conditions(condition: &Value) -> Vec<TrustCondition> {
    let Some(operators) = condition.as_object() else {
        return vec![TrustCondition {
            operator: String::new(),
            key: String::new(),
            values: vec![condition.to_string()],
        }];
    };
    operators
        .iter()
        .flat_map(|(operator, keys)| match keys.as_object() {
            Some(keys) => keys
                .iter()
                .map(|(key, values)| TrustCondition {
                    operator: operator.clone(),
                    key: key.clone(),
                    values: strings(values),
                })
                .collect(),
            None => vec![TrustCondition {
                operator: operator.clone(),
                key: String::new(),
                values: strings(keys),
            }],
        })
        .collect()
}

/// A string, bool, number or a list of them, as strings.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().map(value_text).collect(),
        other => vec![value_text(other)],
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value of an `AWS:` principal, or of the bare `*` (which is AWS's too).
fn aws_principal(principal: &str) -> Option<&str> {
    if principal == "*" {
        return Some("*");
    }
    principal.strip_prefix("AWS:")
}

/// An `AWS` principal value of another account than `account_id`: `*`, an account id,
/// or an ARN whose account field differs. IAM shows a deleted principal as its unique
/// id (`AROA...`, `AIDA...`), whose account cannot be told: not counted.
fn is_other_account(value: &str, account_id: &str) -> bool {
    if value == "*" {
        return true;
    }
    if value.len() == 12 && value.chars().all(|c| c.is_ascii_digit()) {
        return value != account_id;
    }
    if value.starts_with("arn:") {
        return value.split(':').nth(4) != Some(account_id);
    }
    false
}

/// An IAM action pattern (`*` any run, `?` one character, case-insensitive) against an
/// action, so that `sts:*`, `*` and `sts:Assume*` count as allowing `sts:AssumeRole`.
fn iam_pattern_matches(pattern: &str, action: &str) -> bool {
    let pattern: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let action: Vec<char> = action.to_ascii_lowercase().chars().collect();
    // Classic wildcard matching with one backtrack point for the last `*`.
    let (mut p, mut a) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while a < action.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == action[a]) {
            p += 1;
            a += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, a));
            p += 1;
        } else if let Some((star_p, star_a)) = star {
            p = star_p + 1;
            a = star_a + 1;
            star = Some((star_p, star_a + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

fn push_new(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|v| v == value) {
        list.push(value.to_string());
    }
}

#[cfg(test)]
mod tests;
