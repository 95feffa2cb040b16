//! Step Functions: whether the execution that holds a user's lock has ended.

use aws_sdk_sfn::types::ExecutionStatus;
use aws_sdk_sfn::Client;

use crate::aws::AwsError;

/// What Step Functions says of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionState {
    Running,
    /// SUCCEEDED, FAILED, TIMED_OUT or ABORTED (named), with when it stopped; or no
    /// longer known to Step Functions (its history is kept 90 days).
    Ended {
        how: String,
        stopped_at: Option<time::OffsetDateTime>,
    },
}

pub async fn execution_state(
    sfn: &Client,
    execution_arn: &str,
) -> Result<ExecutionState, AwsError> {
    crate::deadline::ensure_time_for("states:DescribeExecution")?;
    match sfn
        .describe_execution()
        .execution_arn(execution_arn)
        .send()
        .await
    {
        Ok(described) => Ok(match described.status() {
            ExecutionStatus::Running | ExecutionStatus::PendingRedrive => ExecutionState::Running,
            other => ExecutionState::Ended {
                how: other.as_str().to_string(),
                stopped_at: described
                    .stop_date()
                    .and_then(|d| time::OffsetDateTime::from_unix_timestamp(d.secs()).ok()),
            },
        }),
        Err(e) => {
            let error = AwsError::from_sdk("states:DescribeExecution", e);
            if error.is_code("ExecutionDoesNotExist") {
                Ok(ExecutionState::Ended {
                    how: "no longer known to Step Functions".to_string(),
                    stopped_at: None,
                })
            } else {
                Err(error)
            }
        }
    }
}
