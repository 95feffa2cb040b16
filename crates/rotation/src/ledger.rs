//! The per-user lock and the record of a rotation (the ledger), in one DynamoDB item
//! per IAM user.
//!
//! Why DynamoDB: taking the lock, handing it over from an ended execution, and every
//! write to the record are conditional writes (`execution_id` must be the writer's, or
//! the ended owner's): a compare-and-swap no other store here offers. Secrets Manager's
//! `CreateSecret` can take a lock once, but cannot hand it over atomically, and its
//! updates are unconditional. One table, whose name is fixed, serves every stack in the
//! account and region, so two stacks for the same user share the lock.
//!
//! The record says what the rotation did, written before each act: the phase, the old
//! key, the new key once created, the key secret that holds it, the holders and the
//! key each holds, the hand-over time and each cluster as Qovery reported it then. It
//! never holds a secret. The next run reads it to finish or undo what an ended run left.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};

use crate::aws::AwsError;
use crate::qovery::HolderRef;
use crate::state::ClusterPlan;

/// How far the recorded rotation got; each phase is written before its act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerPhase {
    /// Preflight took the lock; nothing changed yet.
    Planned,
    /// Undoing the new key an ended run left, before rotating from the start.
    Undoing,
    /// About to call `CreateAccessKey`: a key that appears now cannot be proven ours.
    CreatingKey,
    /// The new key exists; its id is recorded (the proof this tool made it).
    KeyCreated,
    /// About to give the new key to the holders.
    HandingOver,
    /// Every holder holds the new key; `handover_at` and the clusters are recorded.
    HandedOver,
    /// The old key is switched off for the quarantine (or about to be).
    Quarantined,
    /// About to delete the old key.
    Retiring,
    /// About to roll back the new key.
    RollingBack,
    /// A migration: about to create the role credentials and point clusters at them.
    /// Before the point of no return: the next run undoes it.
    MovingClusters,
    /// A migration being undone: clusters pointed back at their static credentials.
    UndoingMigration,
    /// A migration: about to switch registries and helm repositories to the role, the
    /// point of no return: the next run finishes it.
    SwitchingHolders,
}

/// The record of one rotation of one IAM user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub iam_user_name: String,
    /// The execution that holds the lock.
    pub execution_id: String,
    pub organization_id: String,
    pub phase: LedgerPhase,
    pub old_access_key_id: String,
    /// Set as soon as `CreateAccessKey` answered: the proof that this tool made it.
    #[serde(default)]
    pub new_access_key_id: Option<String>,
    #[serde(default)]
    pub key_secret_id: Option<String>,
    #[serde(default)]
    pub new_key_version_id: Option<String>,
    /// Every holder of the rotated keys and the key it held when last written.
    #[serde(default)]
    pub holders: Vec<HolderRef>,
    /// The clusters to redeploy, with what Qovery reported for each at the hand-over.
    #[serde(default)]
    pub clusters: Vec<ClusterPlan>,
    /// When the last holder was given the new key (RFC 3339).
    #[serde(default)]
    pub handover_at: Option<String>,
    /// A move to an IAM role instead of a new key (`new_access_key_id` stays empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<crate::state::MigrationRun>,
    /// The ended execution whose unfinished rotation this one took over, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_over_from: Option<String>,
    pub updated_at: String,
}

impl Record {
    /// The execution that started the recorded rotation: the one taken over, if any.
    pub fn started_by(&self) -> &str {
        self.took_over_from.as_deref().unwrap_or(&self.execution_id)
    }

    /// `execution <id> (phase <phase>, since <time>)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "execution {} (phase {}, last written {})",
            self.execution_id,
            serde_json::to_value(self.phase)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            self.updated_at
        )
    }
}

/// The answer to a claim: the lock is ours now, or someone else's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Taken,
    HeldBy(Box<Record>),
}

const KEY: &str = "iam_user_name";

#[derive(Debug, Clone)]
pub struct Ledger {
    client: Client,
    table: String,
}

impl Ledger {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_string(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The record of `user`, read consistently, if any.
    pub async fn read(&self, user: &str) -> Result<Option<Record>, AwsError> {
        crate::deadline::ensure_time_for("dynamodb:GetItem")?;
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(user.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        let text = item
            .get("record")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| unreadable(user, "it has no `record` attribute"))?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| unreadable(user, &e.to_string()))
    }

    /// Takes the lock with `record`: when nobody holds it, when `record`'s execution
    /// already does (a retry), or when `from` (an ended execution) does.
    pub async fn claim(&self, record: &Record, from: Option<&str>) -> Result<Claim, AwsError> {
        let request = self
            .put(record)?
            .expression_attribute_values(":me", AttributeValue::S(record.execution_id.clone()));
        let request = match from {
            None => request
                .condition_expression("attribute_not_exists(#user) OR execution_id = :me")
                .expression_attribute_names("#user", KEY),
            Some(from) => request
                .condition_expression("execution_id = :from OR execution_id = :me")
                .expression_attribute_values(":from", AttributeValue::S(from.to_string())),
        };
        crate::deadline::ensure_time_for("dynamodb:PutItem")?;
        match request.send().await {
            Ok(_) => Ok(Claim::Taken),
            Err(e) => {
                let error = AwsError::from_sdk("dynamodb:PutItem", e);
                if !error.is_code("ConditionalCheckFailedException") {
                    return Err(error);
                }
                match self.read(&record.iam_user_name).await? {
                    Some(held) => Ok(Claim::HeldBy(Box::new(held))),
                    // Released in between: the caller asks again.
                    None => Err(AwsError {
                        operation: "dynamodb:PutItem",
                        code: Some("ConditionalCheckFailedException".to_string()),
                        message: "the lock changed hands while it was being taken; try again"
                            .to_string(),
                        transient: true,
                    }),
                }
            }
        }
    }

    /// Writes the record of the execution that holds the lock. Fails if the lock is
    /// no longer its own.
    pub async fn write(&self, record: &Record) -> Result<(), AwsError> {
        crate::deadline::ensure_time_for("dynamodb:PutItem")?;
        self.put(record)?
            .condition_expression("execution_id = :me")
            .expression_attribute_values(":me", AttributeValue::S(record.execution_id.clone()))
            .send()
            .await
            .map_err(|e| {
                let mut error = AwsError::from_sdk("dynamodb:PutItem", e);
                if error.is_code("ConditionalCheckFailedException") {
                    error.message = format!(
                        "execution {} no longer holds the lock of IAM user {} in table {}",
                        record.execution_id, record.iam_user_name, self.table
                    );
                }
                error
            })?;
        Ok(())
    }

    /// Releases the lock, if `execution_id` holds it. Releasing a lock that is gone is
    /// not an error (a retry); one held by another execution is left alone.
    pub async fn release(&self, user: &str, execution_id: &str) -> Result<bool, AwsError> {
        crate::deadline::ensure_time_for("dynamodb:DeleteItem")?;
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(user.to_string()))
            .condition_expression("attribute_not_exists(#user) OR execution_id = :me")
            .expression_attribute_names("#user", KEY)
            .expression_attribute_values(":me", AttributeValue::S(execution_id.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => {
                let error = AwsError::from_sdk("dynamodb:DeleteItem", e);
                if error.is_code("ConditionalCheckFailedException") {
                    tracing::warn!(iam_user_name = %user, "the lock belongs to another execution; left alone");
                    Ok(false)
                } else {
                    Err(error)
                }
            }
        }
    }

    fn put(
        &self,
        record: &Record,
    ) -> Result<aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder, AwsError>
    {
        let text = serde_json::to_string(record).expect("a ledger record always serializes");
        Ok(self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, AttributeValue::S(record.iam_user_name.clone()))
            .item(
                "execution_id",
                AttributeValue::S(record.execution_id.clone()),
            )
            .item(
                "phase",
                AttributeValue::S(
                    serde_json::to_value(record.phase)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                ),
            )
            .item("record", AttributeValue::S(text)))
    }
}

fn unreadable(user: &str, why: &str) -> AwsError {
    AwsError {
        operation: "dynamodb:GetItem",
        code: Some("UnreadableRecord".to_string()),
        message: format!("the ledger record of IAM user {user} cannot be read ({why})"),
        transient: false,
    }
}
